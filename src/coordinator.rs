//! The three parties of CryptoNN — authority, clients and server — and the key service between
//! them.
