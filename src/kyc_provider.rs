//! The external eKYC provider adapter (being written).
