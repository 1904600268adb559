//! The pipeline stages, one file each, in the order a message passes them:
//! [`fetch`] → [`decode`] → [`execute`] → [`commit`], then [`relay`] and [`scheduler`]
//! on the saga side, [`effect_fetch`], [`effect`] and [`unclaimed`] on the effect side,
//! and [`sweep`] (retention) on both.
//! Each `run` is the body of one OS thread; they talk only through bounded channels and
//! `pipeline::Shared`.

pub mod commit;
pub mod decode;
pub mod effect;
pub mod effect_fetch;
pub mod execute;
pub mod fetch;
pub mod relay;
pub mod scheduler;
pub mod sweep;
pub mod unclaimed;
