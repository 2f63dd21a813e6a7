"""`python -m services.intake`: run the intake service from env vars alone."""

from services.intake.app import build

if __name__ == "__main__":
    build().run()
