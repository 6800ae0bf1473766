//! fake-dns: scriptable DNS server.
