//! medimg: a read-only FUSE mount of public medical image datasets, fetched lazily from their
//! upstream hosts and cached on local disk.
//!
//! Layers, each importing only those below it:
//! - [`cli`] turns flags and the config file into [`config::Settings`];
//! - [`fuse`] (the only module that sees fuser) adapts kernel requests to [`vfs`];
//! - [`vfs`] is the filesystem core: the tree, listings, gating and indexing;
//! - [`read`] is the read path: file contents, decoded and checked;
//! - [`fetch`] reads byte ranges of blobs through [`cache`] from a [`source::Upstream`], one
//!   fetch per block however many readers miss it ([`flight`]);
//! - [`block`] holds one block's bytes, received once, then shared without copies;
//! - [`index`] (SQLite) and [`archive`] (pure parsers) hold and produce the metadata;
//! - [`resolve`] lists a source's files through its host's API, at index time;
//! - [`labels`] reads a dataset's label tables into its classes view (`classes/<id>/`);
//! - [`catalog`] is the validated list of datasets, [`render`] the text made from it;
//!   [`check`] compares what is mounted for a dataset with what its entry says;
//! - [`tier`] shares blocks and listings between the daemons of a cluster through an
//!   S3-compatible store, under [`fetch`] and [`vfs`];
//! - [`credentials`] finds the tokens hosts want; [`source`] attaches them to their host only;
//!   [`access`] says which local users may read which dataset.

#![warn(missing_docs, rust_2018_idioms)]

pub mod access;
pub mod archive;
pub mod block;
pub mod cache;
pub mod catalog;
pub mod check;
pub mod cli;
pub mod config;
pub mod control;
pub mod credentials;
pub mod fetch;
pub mod flight;
pub mod fuse;
pub mod index;
pub mod labels;
pub mod logs;
pub mod metrics;
pub mod prefetch;
pub mod read;
pub mod render;
pub mod resolve;
pub mod service;
pub mod sizes;
pub mod source;
pub mod tier;
pub mod time;
pub mod vfs;
