"""`python -m services.panels`: run the panels service from env vars alone."""

from services.panels.app import build

if __name__ == "__main__":
    build().run()
