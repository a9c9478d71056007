//! Human durations in config (`500ms`, `30s`, `15m`, `1h`, `2d`).

use std::time::Duration;

pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    if digits.is_empty() {
        return Err(format!("`{text}` is not a duration; write e.g. 500ms, 30s, 15m, 1h"));
    }
    let n: u64 = digits.parse().map_err(|_| format!("`{text}` is too large"))?;
    let ms = match unit {
        "ms" => Some(n),
        "s" => n.checked_mul(1_000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        "d" => n.checked_mul(86_400_000),
        "" => return Err(format!("`{text}` needs a unit: ms, s, m, h or d")),
        _ => return Err(format!("`{unit}` is not a duration unit; use ms, s, m, h or d")),
    };
    ms.map(Duration::from_millis).ok_or_else(|| format!("`{text}` is too large"))
}

pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    match ms {
        0 => "0s".to_owned(),
        _ if ms.is_multiple_of(3_600_000) => format!("{}h", ms / 3_600_000),
        _ if ms.is_multiple_of(60_000) => format!("{}m", ms / 60_000),
        _ if ms.is_multiple_of(1_000) => format!("{}s", ms / 1_000),
        _ => format!("{ms}ms"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Option<u64>) {
        assert_eq!(parse_duration(input).ok().map(|d| d.as_millis() as u64), expected, "{input}");
    }

    #[test]
    fn durations() {
        check("500ms", Some(500));
        check("30s", Some(30_000));
        check("15m", Some(900_000));
        check("1h", Some(3_600_000));
        check("2d", Some(172_800_000));
        check("15", None);
        check("m", None);
        check("1.5h", None);
        check("-1s", None);
        check("99999999999999999999s", None);
        check("3w", None);
    }

    #[test]
    fn formatting_round_trips() {
        for text in ["500ms", "30s", "15m", "1h", "0s"] {
            assert_eq!(format_duration(parse_duration(text).unwrap()), text);
        }
    }
}
