//! podnet's own nftables table (filled in with ipMasq).
