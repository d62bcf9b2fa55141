//! Writing a request's answer (a line, a listing) to the session's stdout.

use bytes::Bytes;

use crate::broker::ctx::{Ctx, OK, Outcome, fail};
use crate::broker::fdio::Fd;
use crate::exit::Exit;

/// Writes a listing to stdout: one JSON array with `--json`, else the text `table` makes;
/// nothing to list is said on stderr (`empty`), so stdout stays data only.
pub(super) async fn write_listing<T: serde::Serialize>(
    ctx: &Ctx,
    out: &Fd,
    json: bool,
    items: &[T],
    empty: &str,
    table: impl FnOnce(&[T]) -> String,
) -> Outcome {
    let text = if json {
        match serde_json::to_string(items) {
            Ok(s) => s + "\n",
            Err(e) => return fail(Exit::Internal, e.to_string()),
        }
    } else if items.is_empty() {
        ctx.status(empty.to_string());
        return OK;
    } else {
        table(items)
    };
    write_all(out, text.into()).await
}

pub(super) async fn write_all(out: &Fd, mut data: Bytes) -> Outcome {
    while !data.is_empty() {
        match out.write_some(std::slice::from_ref(&data)).await {
            Ok(n) => data = data.slice(n..),
            // The reader left: nothing more to say to it.
            Err(_) => return OK,
        }
    }
    OK
}
