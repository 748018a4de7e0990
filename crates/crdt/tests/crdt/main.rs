//! Tests of the replicated data types: the merge laws and convergence (property-based), and the
//! protocol mapping against a user-side model and the TCK's expectations.

mod laws;
mod model;
mod protocol;
mod reference;
mod strategies;
