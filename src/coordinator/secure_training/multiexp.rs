//! The server's variable-time exponentiation kernels moved to [`crate::fe::group::multiexp`]
//! (capability traits implemented by each group backend). Re-exported here under the names the
//! secure-training code has always used.

pub use crate::fe::group::multiexp::{multi_exp, recode, Ct0Table, OddMultiples, Wnaf};
