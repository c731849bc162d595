//! The `zrobot` binary as a library: the command line (`cli`) and the robot
//! server (`server::run` behind its checked `ServerConfig`), so that tests
//! can run a robot in their own process. `main.rs` is only the entry point.

pub mod cli;
mod paths;
pub mod server;
mod template_tests;
