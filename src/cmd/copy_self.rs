//! `secretdrop copy-self`: see [`crate::exec::copy_self`].

use crate::cli::Args;
use crate::error::Error;

/// `secretdrop copy-self`: see [`crate::exec::copy_self`].
pub fn run(args: &Args) -> Result<(), Error> {
    Ok(crate::exec::copy_self(&args.path("dir", None)?)?)
}
