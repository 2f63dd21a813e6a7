"""`python -m services.notifications`: run the notifications service from env vars alone."""

from services.notifications.app import build

if __name__ == "__main__":
    build().run()
