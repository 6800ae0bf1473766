//! Run stage: build each scenario's world, inject, observe and judge.

pub mod observe;
