"""etf-sync: keep a PostgreSQL database of Chinese ETFs current from the Tsanghi API."""

__version__ = "0.1.0"
