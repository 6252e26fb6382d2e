"""Suite-wide fixtures. Per-area fixtures live in each test folder's own conftest.py."""
