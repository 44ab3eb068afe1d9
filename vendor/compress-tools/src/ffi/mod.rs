// Copyright (C) 2019-2021 O.S. Systems Software LTDA
//
// SPDX-License-Identifier: MIT OR Apache-2.0

mod generated;
mod locale;

pub(crate) use crate::ffi::generated::*;
pub(crate) use locale::{UTF8LocaleGuard, WindowsUTF8LocaleGuard};
