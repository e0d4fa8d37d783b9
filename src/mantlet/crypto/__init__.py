"""Keys and encryption: the server signing key, master-key providers,
per-tenant data keys (crypto-shredding) and chunked file encryption."""
