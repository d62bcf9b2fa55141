//! The word splitter: a request string to words, quote-aware, with no expansion of any kind
//! (the rules are in the [`crate::request`] docs, "Words").

use super::error::RequestError;

/// Splits a request into words (module docs). The input is already printable ASCII.
pub fn split_words(text: &str) -> Result<Vec<String>, RequestError> {
    let mut words = Vec::new();
    // `Some` once a word has started, even if it is still empty (`''`).
    let mut word: Option<String> = None;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' => {
                if let Some(done) = word.take() {
                    words.push(done);
                }
            }
            '\'' => {
                let current = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => current.push(c),
                        None => return Err(RequestError::UnterminatedQuote),
                    }
                }
            }
            '"' => {
                let current = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('"') => break,
                        // Only `\"` and `\\` are escapes; any other backslash is literal.
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\')) => current.push(c),
                            Some(c) => {
                                current.push('\\');
                                current.push(c);
                            }
                            None => return Err(RequestError::UnterminatedQuote),
                        },
                        Some(c) => current.push(c),
                        None => return Err(RequestError::UnterminatedQuote),
                    }
                }
            }
            '\\' => match chars.next() {
                Some(c) => word.get_or_insert_with(String::new).push(c),
                None => return Err(RequestError::UnterminatedQuote),
            },
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    if let Some(done) = word {
        words.push(done);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        split_words(s).unwrap()
    }

    #[test]
    fn splitting_handles_spaces_and_quotes() {
        assert_eq!(words("  pub   x  "), ["pub", "x"]);
        assert_eq!(words("a'b c'd"), ["ab cd"]);
        assert_eq!(words("'' x"), ["", "x"]);
        assert_eq!(words(r#""a\"b\\c\d""#), [r#"a"b\c\d"#]);
        assert_eq!(words(r"a\ b \'"), ["a b", "'"]);
        assert_eq!(words(r#"'a"b' "c'd""#), [r#"a"b"#, "c'd"]);
        assert_eq!(words("'$(id)' `x` ;|"), ["$(id)", "`x`", ";|"]);
    }
}
