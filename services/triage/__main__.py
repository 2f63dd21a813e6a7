"""`python -m services.triage`: run the triage service from env vars alone."""

from services.triage.app import build

if __name__ == "__main__":
    build().run()
