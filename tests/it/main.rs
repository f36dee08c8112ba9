//! lakeward's integration tests, as one test binary: Polars, Arrow and Iceberg link once
//! instead of once per file. Each module is one area (its own doc says what it covers);
//! `common` holds the shared harness, databases and process helpers.

// Tests spawn freely: every task they start ends with the test's runtime.
#![allow(clippy::disallowed_methods)]

mod common;

mod anomalies;
mod assets;
mod browser;
mod cli;
mod compose;
mod custom_kind;
mod dag_files;
mod ecommerce;
mod jobs;
mod layering;
mod mapping;
mod notifications;
mod pipeline;
mod prometheus;
mod recovery;
mod rest_catalog;
mod s3;
mod security;
mod serving;
mod sql;
mod store;
mod streaming;
mod tables;
mod web;
mod windows;
