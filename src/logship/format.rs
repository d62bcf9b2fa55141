//! The line: one JSON object per event, rendered straight into one `String` on the logging
//! thread (the shape is in the [`crate::logship`] docs, "The line").

use std::fmt::{self, Write as _};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// Initial room for a line: most lines fit, so formatting rarely reallocates.
const LINE_RESERVE: usize = 256;

/// Keys every line has; event and span fields of these names are left out so each key
/// appears once.
const FIXED_KEYS: [&str; 6] = ["time", "level", "target", "message", "service", "hostname"];

/// Renders `event`, with the fields of its enclosing spans, as one line ending in `tail`.
pub(super) fn render<S>(
    event: &Event<'_>,
    ctx: &Context<'_, S>,
    now: SystemTime,
    tail: &str,
) -> String
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let meta = event.metadata();
    let mut line = String::with_capacity(LINE_RESERVE);
    line.push_str("{\"time\":\"");
    crate::timefmt::push_rfc3339(
        &mut line,
        now.duration_since(UNIX_EPOCH).unwrap_or_default(),
    );
    line.push_str("\",\"level\":\"");
    line.push_str(meta.level().as_str());
    line.push_str("\",\"target\":");
    push_json_str(&mut line, meta.target());
    line.push_str(",\"message\":");

    // Two passes over the event's fields, both straight into the line: the message
    // first, where readers look for it, then the others.
    let mut written = WrittenKeys::default();
    let mut visitor = EventVisitor {
        line: &mut line,
        written: &mut written,
        message_pass: true,
        wrote_message: false,
    };
    event.record(&mut visitor);
    if !visitor.wrote_message {
        visitor.line.push_str("\"\"");
    }
    visitor.message_pass = false;
    event.record(&mut visitor);
    if let Some(scope) = ctx.event_scope(event) {
        for span in scope {
            let ext = span.extensions();
            let Some(SpanFields(span_fields)) = ext.get::<SpanFields>() else {
                continue;
            };
            for (name, value) in span_fields {
                if !written.contains(name) {
                    written.insert(name);
                    push_key(&mut line, name);
                    line.push_str(value);
                }
            }
        }
    }
    line.push_str(tail);
    line
}

/// `,"service":…,"hostname":…}\n`: the end of every line, rendered once per layer.
pub(super) fn line_tail(service: &str, hostname: &str) -> String {
    let mut tail = String::with_capacity(64);
    tail.push_str(",\"service\":");
    push_json_str(&mut tail, service);
    tail.push_str(",\"hostname\":");
    push_json_str(&mut tail, hostname);
    tail.push_str("}\n");
    tail
}

/// The thread's own line about lost lines; hidden from users.
pub(super) fn report_line(dropped: u64, now: SystemTime, tail: &str) -> String {
    let mut line = String::with_capacity(LINE_RESERVE);
    line.push_str("{\"time\":\"");
    crate::timefmt::push_rfc3339(
        &mut line,
        now.duration_since(UNIX_EPOCH).unwrap_or_default(),
    );
    // The target keeps the layer's old module name: readers of these lines may filter on it.
    let _ = write!(
        line,
        "\",\"level\":\"WARN\",\"target\":\"pipe::drain\",\
         \"message\":\"pipe drain: dropped {dropped} log lines\",\
         \"dropped\":{dropped},\"hidden\":true"
    );
    line.push_str(tail);
    line
}

/// A span's fields, rendered when recorded: `(name, JSON value)`.
pub(super) struct SpanFields(pub(super) Vec<(&'static str, String)>);

impl SpanFields {
    fn slot(&mut self, field: &Field) -> Option<&mut String> {
        let name = field.name();
        if FIXED_KEYS.contains(&name) {
            return None;
        }
        let at = match self.0.iter().position(|(n, _)| *n == name) {
            Some(at) => at,
            None => {
                self.0.push((name, String::new()));
                self.0.len() - 1
            }
        };
        let value = &mut self.0.get_mut(at)?.1;
        value.clear();
        Some(value)
    }

    /// Takes newly recorded values over, in place for names already there.
    pub(super) fn merge(&mut self, update: SpanFields) {
        for (name, value) in update.0 {
            match self.0.iter_mut().find(|(n, _)| *n == name) {
                Some((_, old)) => *old = value,
                None => self.0.push((name, value)),
            }
        }
    }
}

/// Writes an event's message (first pass) or its other fields as `,"name":value` (second
/// pass) into the line.
struct EventVisitor<'a> {
    line: &'a mut String,
    written: &'a mut WrittenKeys,
    message_pass: bool,
    wrote_message: bool,
}

impl EventVisitor<'_> {
    fn slot(&mut self, field: &Field) -> Option<&mut String> {
        let name = field.name();
        if name == "message" {
            if !self.message_pass || self.wrote_message {
                return None;
            }
            self.wrote_message = true;
            return Some(&mut *self.line);
        }
        if self.message_pass || FIXED_KEYS.contains(&name) || self.written.contains(name) {
            return None;
        }
        self.written.insert(name);
        push_key(self.line, name);
        Some(&mut *self.line)
    }
}

/// Names an event line holds up to before `WrittenKeys` allocates: more than any usual event and
/// its spans carry.
const WRITTEN_KEYS_INLINE: usize = 32;

/// The field names already in a line, so each appears once; no allocation for the usual
/// handful (this is on the service's logging path).
struct WrittenKeys {
    inline: [&'static str; WRITTEN_KEYS_INLINE],
    len: usize,
    spill: Vec<&'static str>,
}

impl Default for WrittenKeys {
    fn default() -> WrittenKeys {
        WrittenKeys {
            inline: [""; WRITTEN_KEYS_INLINE],
            len: 0,
            spill: Vec::new(),
        }
    }
}

impl WrittenKeys {
    fn contains(&self, name: &str) -> bool {
        self.inline.get(..self.len).unwrap_or(&[]).contains(&name) || self.spill.contains(&name)
    }

    fn insert(&mut self, name: &'static str) {
        match self.inline.get_mut(self.len) {
            Some(slot) => {
                *slot = name;
                self.len += 1;
            }
            None => self.spill.push(name),
        }
    }
}

/// One `Visit` for both: each kind of value rendered once, into the slot the visitor picks.
macro_rules! visit_into_slot {
    ($ty:ty) => {
        impl Visit for $ty {
            fn record_str(&mut self, field: &Field, value: &str) {
                if let Some(out) = self.slot(field) {
                    push_json_str(out, value);
                }
            }
            fn record_bool(&mut self, field: &Field, value: bool) {
                if let Some(out) = self.slot(field) {
                    out.push_str(if value { "true" } else { "false" });
                }
            }
            fn record_i64(&mut self, field: &Field, value: i64) {
                if let Some(out) = self.slot(field) {
                    let _ = write!(out, "{value}");
                }
            }
            fn record_u64(&mut self, field: &Field, value: u64) {
                if let Some(out) = self.slot(field) {
                    let _ = write!(out, "{value}");
                }
            }
            fn record_i128(&mut self, field: &Field, value: i128) {
                if let Some(out) = self.slot(field) {
                    let _ = write!(out, "{value}");
                }
            }
            fn record_u128(&mut self, field: &Field, value: u128) {
                if let Some(out) = self.slot(field) {
                    let _ = write!(out, "{value}");
                }
            }
            fn record_f64(&mut self, field: &Field, value: f64) {
                if let Some(out) = self.slot(field) {
                    push_f64(out, value);
                }
            }
            fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
                if let Some(out) = self.slot(field) {
                    out.push('"');
                    let _ = write!(JsonEscape(out), "{value:?}");
                    out.push('"');
                }
            }
        }
    };
}

visit_into_slot!(EventVisitor<'_>);
visit_into_slot!(SpanFields);

fn push_key(out: &mut String, name: &str) {
    out.push(',');
    push_json_str(out, name);
    out.push(':');
}

fn push_f64(out: &mut String, value: f64) {
    if value.is_finite() {
        // Rust prints floats without exponent and `1.0` as `1`: both valid JSON numbers.
        let _ = write!(out, "{value}");
    } else {
        let _ = write!(out, "\"{value}\"");
    }
}

/// Appends `s` as a JSON string, quotes included.
fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    escape_into(out, s);
    out.push('"');
}

/// Appends `s` escaped for the inside of a JSON string.
fn escape_into(out: &mut String, s: &str) {
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let short = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0x00..=0x1f => "",
            _ => continue,
        };
        // `i` is at an ASCII byte, so both slices end on character boundaries.
        out.push_str(s.get(start..i).unwrap_or_default());
        if short.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        } else {
            out.push_str(short);
        }
        start = i + 1;
    }
    out.push_str(s.get(start..).unwrap_or_default());
}

/// Escapes whatever is formatted into it (a `Debug` value) without a temporary string.
struct JsonEscape<'a>(&'a mut String);

impl fmt::Write for JsonEscape<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        escape_into(self.0, s);
        Ok(())
    }
}
