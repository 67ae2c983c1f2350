//! The serving phase: echo, budgets, backpressure, failures, the session's ends;
//! in modules [`flow`], [`pass_through`], [`ends`].

use super::*;

mod ends;
mod flow;
mod pass_through;
