//! zrobot lua
