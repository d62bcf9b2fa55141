//! The option syntax of authorized_keys lines (sshd(8), AUTHORIZED_KEYS FILE FORMAT):
//! `restrict,command="a b" ssh-ed25519 AAAA… comment`. Options are separated by commas and
//! end at the first space or tab; inside double quotes neither ends anything, and `\"`
//! does not end a quote.

/// Splits sshd-style options (`restrict,command="a b"`) from the rest of the line: they end
/// at the first space or tab outside double quotes, where `\"` does not end a quote. `None`
/// when there is no such end (an unterminated quote, or nothing after the options).
pub fn split_options(line: &str) -> Option<(&str, &str)> {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ' ' | '\t' if !quoted => {
                let rest = line[i..].trim_start_matches([' ', '\t']);
                return (!rest.is_empty()).then_some((&line[..i], rest));
            }
            _ => {}
        }
    }
    None
}
