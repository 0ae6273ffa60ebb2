//! Shell words: splitting a script into words, redacting them and quoting them again.

use std::borrow::Cow;

use super::{quote_argument, redact_argv};

/// Quotes a redacted shell word for writing back into its script. Unlike
/// [`quote_argument`], it also quotes shell operators, so the script splits the same way.
fn quote_shell_word(word: &str) -> Cow<'_, str> {
    let has_special = word.chars().any(|c| {
        matches!(
            c,
            ';' | '&' | '|' | '(' | ')' | '<' | '>' | '\\' | '$' | '`'
        )
    });
    if !has_special {
        return quote_argument(word);
    }

    Cow::Owned(format!("'{}'", word.replace('\'', r"'\''")))
}

struct ShellWord {
    /// Byte range of the word in the text, quotes included.
    start: usize,
    end: usize,
    /// The word after quote removal.
    value: String,
}

/// Splits text into words the way a POSIX shell does for quotes, backslashes, blanks and
/// control operators. Expansions, here-documents and `$'...'` quoting are not interpreted.
fn split_shell_words(text: &str) -> Vec<ShellWord> {
    let mut words = Vec::new();
    let mut current: Option<ShellWord> = None;
    let mut chars = text.char_indices().peekable();

    while let Some((index, c)) = chars.next() {
        if matches!(
            c,
            ' ' | '\t' | '\n' | ';' | '&' | '|' | '(' | ')' | '<' | '>'
        ) {
            finish_word(&mut current, index, &mut words);
            continue;
        }

        let word = current.get_or_insert_with(|| ShellWord {
            start: index,
            end: index,
            value: String::new(),
        });
        match c {
            '\'' => {
                for (_, quoted) in chars.by_ref() {
                    if quoted == '\'' {
                        break;
                    }
                    word.value.push(quoted);
                }
            }
            '"' => {
                while let Some((_, quoted)) = chars.next() {
                    match quoted {
                        '"' => break,
                        '\\' => match chars.peek() {
                            Some(&(_, escaped))
                                if matches!(escaped, '"' | '\\' | '$' | '`' | '\n') =>
                            {
                                word.value.push(escaped);
                                chars.next();
                            }
                            _ => word.value.push('\\'),
                        },
                        _ => word.value.push(quoted),
                    }
                }
            }
            '\\' => {
                if let Some((_, escaped)) = chars.next()
                    && escaped != '\n'
                {
                    word.value.push(escaped);
                }
            }
            _ => word.value.push(c),
        }
    }

    finish_word(&mut current, text.len(), &mut words);
    words
}

fn finish_word(current: &mut Option<ShellWord>, end: usize, words: &mut Vec<ShellWord>) {
    if let Some(mut word) = current.take() {
        word.end = end;
        words.push(word);
    }
}

/// Redacts the shell words of `text` as an argument list and writes each changed word
/// back in place, quoted again.
pub(super) fn redact_shell_words(text: &str, depth: usize) -> String {
    let words = split_shell_words(text);
    let values: Vec<String> = words.iter().map(|word| word.value.clone()).collect();
    let redacted = redact_argv(&values, depth + 1);

    let mut output = String::with_capacity(text.len());
    let mut copied = 0;
    for (word, new_value) in words.iter().zip(&redacted) {
        if *new_value == word.value {
            continue;
        }
        output.push_str(&text[copied..word.start]);
        output.push_str(&quote_shell_word(new_value));
        copied = word.end;
    }
    output.push_str(&text[copied..]);
    output
}
