//! The option syntax of authorized_keys lines (sshd(8), AUTHORIZED_KEYS FILE FORMAT):
//! `restrict,command="a b" ssh-ed25519 AAAA… comment`. Options are separated by commas and
//! end at the first space or tab; inside double quotes neither separates anything, and
//! `\"` does not end a quote. Both functions below read a line through one scanner
//! (`unquoted`), so they agree on where quotes begin and end.

/// The characters of `text` that stand outside double quotes, with their byte offsets:
/// quote characters themselves, everything between them and each escaped character are
/// left out.
fn unquoted(text: &str) -> impl Iterator<Item = (usize, char)> + '_ {
    let mut quoted = false;
    let mut escaped = false;
    text.char_indices().filter(move |&(_, c)| match c {
        _ if escaped => {
            escaped = false;
            false
        }
        '\\' if quoted => {
            escaped = true;
            false
        }
        '"' => {
            quoted = !quoted;
            false
        }
        _ => !quoted,
    })
}

/// Splits sshd-style options (`restrict,command="a b"`) from the rest of the line: they end
/// at the first space or tab outside double quotes, where `\"` does not end a quote. `None`
/// when there is no such end (an unterminated quote, or nothing after the options).
pub fn split_options(line: &str) -> Option<(&str, &str)> {
    let (i, _) = unquoted(line).find(|&(_, c)| matches!(c, ' ' | '\t'))?;
    let rest = line[i..].trim_start_matches([' ', '\t']);
    (!rest.is_empty()).then_some((&line[..i], rest))
}

/// Splits an option list (the first half of [`split_options`]) at the commas outside double
/// quotes: `a,b="x,y",c` is `a`, `b="x,y"`, `c`. Options are kept as written (sshd compares
/// their names without regard to case).
pub fn option_list(options: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, _) in unquoted(options).filter(|&(_, c)| c == ',') {
        out.push(&options[start..i]);
        start = i + 1;
    }
    out.push(&options[start..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_end_at_the_first_blank_outside_quotes() {
        assert_eq!(
            split_options("restrict,command=\"a b\" ssh-ed25519 K c"),
            Some(("restrict,command=\"a b\"", "ssh-ed25519 K c"))
        );
        assert_eq!(
            split_options("command=\"x \\\" y\"\t\tk"),
            Some(("command=\"x \\\" y\"", "k"))
        );
        assert_eq!(split_options("command=\"unterminated k"), None);
        assert_eq!(split_options("no-pty   "), None);
        assert_eq!(split_options("no-pty"), None);
    }

    #[test]
    fn option_lists_split_at_commas_outside_quotes() {
        assert_eq!(
            option_list("restrict,command=\"a,b \\\",c\",no-pty"),
            vec!["restrict", "command=\"a,b \\\",c\"", "no-pty"]
        );
        assert_eq!(option_list("one"), vec!["one"]);
        assert_eq!(option_list(""), vec![""]);
        assert_eq!(option_list("a,"), vec!["a", ""]);
    }
}
