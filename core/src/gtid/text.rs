//! Lexing helpers shared by the GTID parsers and formatters: byte-offset
//! tracking slices, strict numbers, intervals, UUIDs and tags.

use std::fmt;

use super::GtidError;

/// Builds a [`GtidError::Parse`] for `input` at byte `position`.
pub(super) fn error(input: &str, position: usize, reason: impl Into<String>) -> GtidError {
    GtidError::Parse {
        input: input.to_owned(),
        position,
        reason: reason.into(),
    }
}

/// A slice of the text being parsed, with its byte offset in the whole text
/// so errors can point at it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Span<'a> {
    pub offset: usize,
    pub text: &'a str,
}

impl<'a> Span<'a> {
    /// The whole of `text`.
    pub fn whole(text: &'a str) -> Self {
        Span { offset: 0, text }
    }

    /// Byte offset just past the end of this span.
    pub fn end(self) -> usize {
        self.offset + self.text.len()
    }

    /// Removes leading and trailing whitespace, keeping offsets right.
    pub fn trim(self) -> Self {
        let leading = self.text.len() - self.text.trim_start().len();
        Span {
            offset: self.offset + leading,
            text: self.text.trim(),
        }
    }

    /// Splits on every `sep`; each piece keeps its own offset.
    pub fn split(self, sep: char) -> impl Iterator<Item = Span<'a>> {
        let mut offset = self.offset;
        self.text.split(sep).map(move |text| {
            let piece = Span { offset, text };
            offset += text.len() + sep.len_utf8();
            piece
        })
    }

    /// Splits around the first `sep`, if any.
    pub fn split_once(self, sep: &str) -> Option<(Span<'a>, Span<'a>)> {
        let (before, after) = self.text.split_once(sep)?;
        Some((
            Span {
                offset: self.offset,
                text: before,
            },
            Span {
                offset: self.offset + before.len() + sep.len(),
                text: after,
            },
        ))
    }
}

/// Splits a comma-separated list into its entries, trimmed of surrounding
/// whitespace (servers print `,\n` between entries). A blank input has no
/// entries; an empty entry (`a,,b` or a trailing comma) is an error.
pub(super) fn entries(input: &str) -> Result<Vec<Span<'_>>, GtidError> {
    if input.trim().is_empty() {
        return Ok(Vec::new());
    }
    Span::whole(input)
        .split(',')
        .map(|raw| {
            let entry = raw.trim();
            if entry.text.is_empty() {
                Err(error(input, raw.offset, "empty entry between commas"))
            } else {
                Ok(entry)
            }
        })
        .collect()
}

/// Parses a non-negative decimal number made of ASCII digits only (no sign,
/// no spaces), rejecting values that do not fit in `T`. `what` names the
/// field in error messages.
pub(super) fn number<T: TryFrom<u64>>(
    input: &str,
    span: Span<'_>,
    what: &str,
) -> Result<T, GtidError> {
    if span.text.is_empty() {
        return Err(error(input, span.offset, format!("{what} is missing")));
    }
    if !span.text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(error(input, span.offset, format!("{what} is not a number")));
    }
    span.text
        .bytes()
        .try_fold(0u64, |acc, digit| {
            acc.checked_mul(10)?.checked_add(u64::from(digit - b'0'))
        })
        .and_then(|value| T::try_from(value).ok())
        .ok_or_else(|| {
            error(
                input,
                span.offset,
                format!(
                    "{what} {} overflows {}",
                    span.text,
                    std::any::type_name::<T>()
                ),
            )
        })
}

/// Parses an inclusive interval `n` or `a-b`, with `min <= a <= b`.
pub(super) fn interval(input: &str, span: Span<'_>, min: u64) -> Result<(u64, u64), GtidError> {
    let (start, end) = match span.split_once("-") {
        Some((start, end)) => (
            number(input, start, "interval start")?,
            number(input, end, "interval end")?,
        ),
        None => {
            let n = number(input, span, "interval")?;
            (n, n)
        }
    };
    if start < min {
        return Err(error(
            input,
            span.offset,
            format!(
                "interval {:?} starts at {start}, but transaction numbers start at {min}",
                span.text
            ),
        ));
    }
    if start > end {
        return Err(error(
            input,
            span.offset,
            format!("interval {:?} is reversed (start > end)", span.text),
        ));
    }
    Ok((start, end))
}

/// Positions of the hyphens in a hyphenated UUID.
const UUID_HYPHENS: [usize; 4] = [8, 13, 18, 23];

/// Parses a hyphenated UUID (`8-4-4-4-12` hex digits, any case).
pub(super) fn uuid(input: &str, span: Span<'_>) -> Result<[u8; 16], GtidError> {
    let invalid = |at: usize| {
        error(
            input,
            span.offset + at,
            format!(
                "invalid UUID {:?}: expected 8-4-4-4-12 hexadecimal digits",
                span.text
            ),
        )
    };
    if span.text.len() != 36 {
        return Err(invalid(0));
    }
    let mut uuid = [0u8; 16];
    let mut nibble = 0;
    for (at, byte) in span.text.bytes().enumerate() {
        if UUID_HYPHENS.contains(&at) {
            if byte != b'-' {
                return Err(invalid(at));
            }
            continue;
        }
        let value = char::from(byte)
            .to_digit(16)
            .and_then(|v| u8::try_from(v).ok())
            .ok_or_else(|| invalid(at))?;
        let slot = &mut uuid[nibble / 2];
        *slot = (*slot << 4) | value;
        nibble += 1;
    }
    Ok(uuid)
}

/// Writes a UUID in canonical lowercase hyphenated form.
pub(super) fn write_uuid(f: &mut fmt::Formatter<'_>, uuid: &[u8; 16]) -> fmt::Result {
    for (i, byte) in uuid.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            f.write_str("-")?;
        }
        write!(f, "{byte:02x}")?;
    }
    Ok(())
}

/// Longest tag MySQL accepts.
const MAX_TAG_LEN: usize = 32;

/// Parses a MySQL 8.4 GTID tag (`[a-z_][a-z0-9_]{0,31}`, any case) and
/// returns it normalized to lowercase.
pub(super) fn tag(input: &str, span: Span<'_>) -> Result<String, GtidError> {
    let text = span.text;
    if text.is_empty() {
        return Err(error(input, span.offset, "tag is empty"));
    }
    if text.len() > MAX_TAG_LEN {
        return Err(error(
            input,
            span.offset,
            format!("tag {text:?} is longer than {MAX_TAG_LEN} characters"),
        ));
    }
    for (at, c) in text.char_indices() {
        let allowed = c == '_' || c.is_ascii_alphabetic() || (at > 0 && c.is_ascii_digit());
        if !allowed {
            return Err(error(
                input,
                span.offset + at,
                format!("invalid character {c:?} in tag {text:?}"),
            ));
        }
    }
    Ok(text.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn entries_track_offsets_and_trim() {
        let input = " a ,\n b,c";
        let got: Vec<_> = entries(input)
            .unwrap()
            .into_iter()
            .map(|s| (s.offset, s.text))
            .collect();
        assert_eq!(got, vec![(1, "a"), (6, "b"), (8, "c")]);
        assert!(entries("  \n").unwrap().is_empty());
    }

    #[test]
    fn entries_reject_empty_entry() {
        let err = entries("a,,b").unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"invalid GTID "a,,b" at byte 2: empty entry between commas"#
        );
        assert!(entries("a,").is_err());
    }

    #[test]
    fn numbers_are_strict() {
        let n = |s| number::<u32>(s, Span::whole(s), "domain");
        assert_eq!(n("42").unwrap(), 42);
        assert_eq!(n("4294967295").unwrap(), u32::MAX);
        assert!(n("+1").is_err());
        assert!(n(" 1").is_err());
        assert!(n("").is_err());
        assert_eq!(
            n("4294967296").unwrap_err().to_string(),
            r#"invalid GTID "4294967296" at byte 0: domain 4294967296 overflows u32"#
        );
        let big = "18446744073709551616";
        assert!(number::<u64>(big, Span::whole(big), "seq").is_err());
    }

    #[test]
    fn uuids_roundtrip_through_display() {
        struct Shown([u8; 16]);
        impl fmt::Display for Shown {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write_uuid(f, &self.0)
            }
        }
        let text = "3E11FA47-71CA-11E1-9E33-C80AA9429562";
        let parsed = uuid(text, Span::whole(text)).unwrap();
        assert_eq!(parsed[0], 0x3e);
        assert_eq!(parsed[15], 0x62);
        assert_eq!(Shown(parsed).to_string(), text.to_ascii_lowercase());
        let bad = "3e11fa47-71ca-11e1-9e33_c80aa9429562";
        let err = uuid(bad, Span::whole(bad)).unwrap_err();
        assert!(matches!(err, GtidError::Parse { position: 23, .. }));
    }

    #[test]
    fn tags_are_validated_and_lowercased() {
        fn t(s: &str) -> Result<String, GtidError> {
            tag(s, Span::whole(s))
        }
        assert_eq!(t("My_Tag1").unwrap(), "my_tag1");
        assert_eq!(t("_").unwrap(), "_");
        assert!(t("1abc").is_err());
        assert!(t("a-b").is_err());
        assert!(t(&"a".repeat(32)).is_ok());
        assert!(t(&"a".repeat(33)).is_err());
    }
}
