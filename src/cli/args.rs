//! Flag values read the way Go's pflag reads them, shared by every subcommand.
//!
//! Kamal and existing scripts were written against cobra/pflag, so a value must mean here what
//! it meant there: booleans accept `strconv.ParseBool`'s spellings and only ever take a value
//! after `=`, durations are Go durations, list flags split each value as one CSV record.
//! The parsers here are plain functions handed to clap; they check syntax only and turn
//! strings into the control newtypes, never fill in defaults (those live in the daemon).

use std::time::Duration;

use crate::control::ServiceName;
use crate::go_duration;

/// Go's `strconv.ParseBool`.
pub fn go_bool(text: &str) -> Result<bool, String> {
    match text {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err("expected true or false".to_string()),
    }
}

pub fn duration(text: &str) -> Result<Duration, String> {
    go_duration::parse(text)
}

/// A byte count: plain decimal, no unit suffix, as pflag's int64 flags.
pub fn size(text: &str) -> Result<u64, String> {
    text.parse()
        .map_err(|_| "expected a whole number of bytes".to_string())
}

/// A whole number, as pflag's int flags.
pub fn int(text: &str) -> Result<i32, String> {
    text.parse()
        .map_err(|_| "expected a whole number".to_string())
}

pub fn port(text: &str) -> Result<u16, String> {
    text.parse()
        .map_err(|_| "expected a port number".to_string())
}

/// A free-form string value (paths, header names, messages): any text is accepted here.
pub fn text(text: &str) -> Result<String, String> {
    Ok(text.to_string())
}

/// The values of one occurrence of a list flag (`--host=a,b` gives two).
#[derive(Debug, Clone, PartialEq)]
pub struct CsvList<T>(pub Vec<T>);

/// A clap value parser for a list flag whose fields become `T` through `parse`.
pub fn list<T: 'static>(
    parse: fn(&str) -> Result<T, String>,
) -> impl Fn(&str) -> Result<CsvList<T>, String> + Clone + Send + Sync + 'static {
    move |value| {
        csv_fields(value)?
            .iter()
            .map(|field| parse(field))
            .collect::<Result<_, _>>()
            .map(CsvList)
    }
}

/// Every occurrence of a list flag, joined; `None` when the flag was not given at all, so the
/// daemon's default applies.
pub fn joined<T>(occurrences: Vec<CsvList<T>>) -> Option<Vec<T>> {
    if occurrences.is_empty() {
        return None;
    }
    Some(occurrences.into_iter().flat_map(|list| list.0).collect())
}

/// Splits one value as a single CSV record (pflag's `StringSlice` uses `encoding/csv`): fields
/// are separated by commas, a field wrapped in double quotes may contain commas and `""` for a
/// quote. An empty value is an empty list, as in pflag.
fn csv_fields(value: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    if value.is_empty() {
        return Ok(fields);
    }
    let mut rest = value;
    loop {
        let (field, after) = match rest.strip_prefix('"') {
            Some(quoted) => quoted_field(quoted)?,
            None => {
                let end = rest.find(',').unwrap_or(rest.len());
                let (field, after) = rest.split_at(end);
                if field.contains('"') {
                    return Err("bare \" in non-quoted field".to_string());
                }
                (field.to_string(), after)
            }
        };
        fields.push(field);
        match after.strip_prefix(',') {
            Some(next) => rest = next,
            None => return Ok(fields),
        }
    }
}

/// Reads a quoted field whose opening quote is already consumed; returns the field and what
/// follows the closing quote (empty or starting with a comma).
fn quoted_field(mut rest: &str) -> Result<(String, &str), String> {
    let mut field = String::new();
    loop {
        let end = rest
            .find('"')
            .ok_or_else(|| "extraneous or missing \" in quoted field".to_string())?;
        field.push_str(&rest[..end]);
        rest = &rest[end + 1..];
        match rest.strip_prefix('"') {
            Some(after_escape) => {
                field.push('"');
                rest = after_escape;
            }
            None if rest.is_empty() || rest.starts_with(',') => return Ok((field, rest)),
            None => return Err("extraneous or missing \" in quoted field".to_string()),
        }
    }
}

/// The one positional service name of `deploy`, `remove`, `pause`, `stop` and `resume`; the
/// count message is cobra's `ExactArgs(1)`.
pub fn one_service(positional: Vec<String>) -> Result<ServiceName, String> {
    match positional.as_slice() {
        [name] => ServiceName::parse(name),
        other => Err(format!("accepts 1 arg(s), received {}", other.len())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::TargetAddress;

    #[test]
    fn accepts_every_go_bool_spelling_when_parsing_booleans() {
        for yes in ["1", "t", "T", "TRUE", "true", "True"] {
            assert_eq!(go_bool(yes), Ok(true), "{yes}");
        }
        for no in ["0", "f", "F", "FALSE", "false", "False"] {
            assert_eq!(go_bool(no), Ok(false), "{no}");
        }
        for bad in ["yes", "tRUE", "", "2"] {
            assert!(go_bool(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_go_durations_and_rejects_bare_numbers() {
        assert_eq!(duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(duration("2.5s"), Ok(Duration::from_millis(2500)));
        assert_eq!(duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(duration("30").unwrap_err().contains("missing unit"));
    }

    #[test]
    fn reads_sizes_as_plain_bytes_only() {
        assert_eq!(size("40000000"), Ok(40_000_000));
        assert_eq!(size("0"), Ok(0));
        assert!(size("1MB").is_err());
        assert!(size("-1").is_err());
    }

    #[test]
    fn splits_values_as_one_csv_record() {
        let fields = |value| csv_fields(value).unwrap();
        assert_eq!(fields("a"), ["a"]);
        assert_eq!(fields("a,b"), ["a", "b"]);
        assert_eq!(fields("\"a,b\",c"), ["a,b", "c"]);
        assert_eq!(fields("\"say \"\"hi\"\"\""), ["say \"hi\""]);
        assert_eq!(fields("a,"), ["a", ""]);
        assert!(fields("").is_empty());
        assert!(csv_fields("a\"b").is_err());
        assert!(csv_fields("\"ab").is_err());
        assert!(csv_fields("\"a\"b").is_err());
    }

    #[test]
    fn turns_each_field_into_the_newtype_when_parsing_a_list() {
        let targets = list(TargetAddress::parse)("1.1.1.1:80,1.1.1.2:80").unwrap();
        let texts: Vec<&str> = targets.0.iter().map(TargetAddress::as_str).collect();
        assert_eq!(texts, ["1.1.1.1:80", "1.1.1.2:80"]);
        let error = list(TargetAddress::parse)("1.1.1.1:80,x:99999").unwrap_err();
        assert!(error.contains("\"x:99999\""), "{error}");
    }

    #[test]
    fn joins_occurrences_and_is_none_when_the_flag_is_absent() {
        assert_eq!(joined::<String>(vec![]), None);
        let occurrences = vec![CsvList(vec![1, 2]), CsvList(vec![]), CsvList(vec![3])];
        assert_eq!(joined(occurrences), Some(vec![1, 2, 3]));
    }

    #[test]
    fn wants_exactly_one_service_name() {
        assert_eq!(
            one_service(vec!["app-web".into()]).unwrap().as_str(),
            "app-web"
        );
        assert_eq!(
            one_service(vec![]).unwrap_err(),
            "accepts 1 arg(s), received 0"
        );
        assert_eq!(
            one_service(vec!["a".into(), "false".into()]).unwrap_err(),
            "accepts 1 arg(s), received 2"
        );
        assert!(one_service(vec!["a b".into()]).is_err());
    }
}
