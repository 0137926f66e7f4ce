//! Money and ratio units: exact integer micros, basis points, currency minor units and platform rounding.
//!
//! Every amount is held as an `i64` number of micros (millionths of the currency unit), and every ratio
//! as basis points (1.2x = 12,000 bp), so that the decision compares integers and never meets float error.

/// Micros in one unit of a currency.
pub const MICROS_PER_UNIT: i64 = 1_000_000;

/// Basis points in a ratio of 1.0.
pub const BP_PER_UNIT: i64 = 10_000;

/// Number of decimal digits of a currency's smallest unit (ISO 4217 minor unit), 2 when unknown.
///
/// Zero-decimal currencies (JPY, KRW, CLP, ...) bill in whole units; some Gulf currencies in thousandths.
pub fn minor_unit_digits(currency: &str) -> u32 {
    match currency.to_ascii_uppercase().as_str() {
        "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF" | "UGX"
        | "UYI" | "VND" | "VUV" | "XAF" | "XOF" | "XPF" => 0,
        "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
        _ => 2,
    }
}

/// Decimal digits of Meta's amounts (`bid_amount`, budgets) for an account currency: Meta's own currency
/// offsets, not ISO 4217. Offset 1 (whole units, 0 digits): CLP, COP, CRC, HUF, ISK, IDR, JPY, KRW, PYG,
/// TWD; offset 100 (2 digits) for every other currency, including BHD and JOD (3 digits in ISO).
pub fn meta_amount_digits(currency: &str) -> u32 {
    match currency.to_ascii_uppercase().as_str() {
        "CLP" | "COP" | "CRC" | "HUF" | "ISK" | "IDR" | "JPY" | "KRW" | "PYG" | "TWD" => 0,
        _ => 2,
    }
}

/// Micros in one minor unit (cent) for a number of minor-unit digits: 10,000 for 2 digits, 1,000,000 for 0.
pub fn micros_per_minor_unit(digits: u32) -> i64 {
    10_i64.pow(6_u32.saturating_sub(digits.min(6)))
}

/// Converts a decimal amount (config values, JSON numbers) to micros, rounding half away from zero.
/// `None` for NaN, infinities and amounts too large for micros.
pub fn micros_from_f64(value: f64) -> Option<i64> {
    if !value.is_finite() {
        return None;
    }
    let scaled = (value * MICROS_PER_UNIT as f64).round();
    // Largest exact integer an f64 holds; beyond it micros would be approximate anyway.
    if scaled.abs() > 9.0e15 {
        return None;
    }
    Some(scaled as i64)
}

/// Converts a ratio (1.2) to basis points (12,000), rounding to the nearest basis point.
pub fn bp_from_f64(ratio: f64) -> Option<i64> {
    if !ratio.is_finite() || ratio.abs() > 1.0e9 {
        return None;
    }
    Some((ratio * BP_PER_UNIT as f64).round() as i64)
}

/// Parses a plain decimal string (`"12.34"`, `"-0.5"`, `"3"`) into an integer scaled by `10^scale`,
/// exactly. Extra fractional digits are rounded half away from zero. Used for Meta's string numbers.
pub fn parse_decimal(text: &str, scale: u32) -> Option<i64> {
    let text = text.trim();
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (int_part, frac_part) = match digits.split_once('.') {
        Some((i, f)) => (i, f),
        None => (digits, ""),
    };
    if int_part.is_empty() && frac_part.is_empty() {
        return None;
    }
    if !int_part.chars().all(|c| c.is_ascii_digit())
        || !frac_part.chars().all(|c| c.is_ascii_digit())
    {
        return None;
    }
    let factor = 10_i128.checked_pow(scale)?;
    let int_value: i128 = if int_part.is_empty() {
        0
    } else {
        int_part.parse().ok()?
    };
    let mut value = int_value.checked_mul(factor)?;
    let scale_usize = scale as usize;
    let kept: String = frac_part.chars().take(scale_usize).collect();
    if !kept.is_empty() {
        let padded = format!("{kept:0<scale_usize$}");
        value = value.checked_add(padded.parse::<i128>().ok()?)?;
    }
    if let Some(next) = frac_part.chars().nth(scale_usize)
        && next >= '5'
    {
        value = value.checked_add(1)?;
    }
    let value = if negative { -value } else { value };
    i64::try_from(value).ok()
}

/// How to round an amount that falls between two platform units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rounding {
    /// Towards negative infinity.
    Down,
    /// Towards positive infinity.
    Up,
    /// To the nearest unit, halves away from zero.
    Nearest,
}

/// Rounds micros to a multiple of `unit` micros (the platform's smallest bid step).
pub fn round_to_unit(micros: i64, unit: i64, rounding: Rounding) -> i64 {
    if unit <= 1 {
        return micros;
    }
    let floor = micros.div_euclid(unit) * unit;
    let rest = micros - floor;
    if rest == 0 {
        return micros;
    }
    match rounding {
        Rounding::Down => floor,
        Rounding::Up => floor.saturating_add(unit),
        Rounding::Nearest if micros < 0 => {
            round_to_unit(micros.saturating_neg(), unit, Rounding::Nearest).saturating_neg()
        }
        Rounding::Nearest => {
            if rest * 2 >= unit {
                floor.saturating_add(unit)
            } else {
                floor
            }
        }
    }
}

/// Micros to the currency's minor units (Meta's `bid_amount`), rounding to the nearest unit.
pub fn micros_to_minor(micros: i64, digits: u32) -> i64 {
    let unit = micros_per_minor_unit(digits);
    round_to_unit(micros, unit, Rounding::Nearest) / unit
}

/// Minor units (cents) to micros.
pub fn minor_to_micros(minor: i64, digits: u32) -> i64 {
    minor.saturating_mul(micros_per_minor_unit(digits))
}

/// Applies a signed step in basis points (-1,000 = -10%) to an amount, exactly, and rounds the result to
/// the nearest multiple of `unit` (the platform's smallest bid step). If rounding would cancel the step
/// entirely, the result moves one unit in the step's direction instead, so a decided change is never lost.
pub fn apply_step(micros: i64, step_bp: i64, unit: i64) -> i64 {
    let raw = i128::from(micros) * i128::from(BP_PER_UNIT + step_bp);
    let bp = i128::from(BP_PER_UNIT);
    let mut value = raw / bp;
    let rem = raw % bp;
    if rem.abs() * 2 >= bp {
        value += rem.signum();
    }
    let exact = i64::try_from(value).unwrap_or(if value > 0 { i64::MAX } else { i64::MIN });
    let rounded = round_to_unit(exact, unit, Rounding::Nearest);
    if rounded != micros || step_bp == 0 {
        return rounded;
    }
    let directional = if step_bp < 0 {
        Rounding::Down
    } else {
        Rounding::Up
    };
    let moved = round_to_unit(exact, unit, directional);
    if moved != micros {
        moved
    } else if step_bp < 0 {
        micros.saturating_sub(unit.max(1))
    } else {
        micros.saturating_add(unit.max(1))
    }
}

/// Formats micros as a decimal amount with the currency's minor digits: `4500000, USD` -> `4.50`.
pub fn format_amount(micros: i64, digits: u32) -> String {
    let unit = micros_per_minor_unit(digits);
    let minor = round_to_unit(micros, unit, Rounding::Nearest) / unit;
    if digits == 0 {
        return minor.to_string();
    }
    let factor = 10_i64.pow(digits);
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    let factor_u = factor.unsigned_abs();
    format!(
        "{sign}{}.{:0width$}",
        abs / factor_u,
        abs % factor_u,
        width = digits as usize
    )
}

/// Micros as an `f64` amount, for JSON bodies that take decimal numbers (the generic platform).
pub fn micros_to_f64(micros: i64) -> f64 {
    micros as f64 / MICROS_PER_UNIT as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_amounts_use_metas_offsets_not_iso_digits() {
        for whole in [
            "COP", "CRC", "HUF", "IDR", "TWD", "CLP", "ISK", "JPY", "KRW", "PYG",
        ] {
            assert_eq!(meta_amount_digits(whole), 0, "{whole}");
        }
        for hundredths in ["BHD", "JOD", "USD", "EUR", "BRL", "KWD"] {
            assert_eq!(meta_amount_digits(hundredths), 2, "{hundredths}");
        }
        // ISO says otherwise for these: the 100x / 10x errors Meta's offsets avoid.
        assert_eq!(minor_unit_digits("COP"), 2);
        assert_eq!(minor_unit_digits("BHD"), 3);
        // 150 COP is bid_amount=150; 1.234 BHD is bid_amount=123.
        assert_eq!(micros_to_minor(150_000_000, meta_amount_digits("COP")), 150);
        assert_eq!(micros_to_minor(1_234_000, meta_amount_digits("BHD")), 123);
    }

    #[test]
    fn zero_decimal_and_three_decimal_currencies_are_known() {
        assert_eq!(minor_unit_digits("JPY"), 0);
        assert_eq!(minor_unit_digits("krw"), 0);
        assert_eq!(minor_unit_digits("KWD"), 3);
        assert_eq!(minor_unit_digits("BRL"), 2);
        assert_eq!(micros_per_minor_unit(0), 1_000_000);
        assert_eq!(micros_per_minor_unit(2), 10_000);
        assert_eq!(micros_per_minor_unit(3), 1_000);
    }

    #[test]
    fn floats_convert_to_exact_micros() {
        assert_eq!(micros_from_f64(0.1), Some(100_000));
        assert_eq!(micros_from_f64(50.0), Some(50_000_000));
        assert_eq!(micros_from_f64(4.8), Some(4_800_000));
        assert_eq!(micros_from_f64(f64::NAN), None);
        assert_eq!(bp_from_f64(1.2), Some(12_000));
        assert_eq!(bp_from_f64(0.8), Some(8_000));
        assert_eq!(bp_from_f64(-0.1), Some(-1_000));
    }

    #[test]
    fn decimal_strings_parse_exactly() {
        assert_eq!(parse_decimal("12.34", 6), Some(12_340_000));
        assert_eq!(parse_decimal("0.5", 6), Some(500_000));
        assert_eq!(parse_decimal("3", 3), Some(3_000));
        assert_eq!(parse_decimal("1.0000005", 6), Some(1_000_001));
        assert_eq!(parse_decimal("-2.5", 1), Some(-25));
        assert_eq!(parse_decimal(".5", 2), Some(50));
        assert_eq!(parse_decimal("abc", 2), None);
        assert_eq!(parse_decimal("", 2), None);
        assert_eq!(parse_decimal("1e5", 2), None);
    }

    #[test]
    fn meta_minor_units_follow_the_currency() {
        assert_eq!(micros_to_minor(1_500_000, 2), 150);
        assert_eq!(micros_to_minor(150_000_000, 0), 150);
        assert_eq!(minor_to_micros(150, 2), 1_500_000);
        assert_eq!(minor_to_micros(150, 0), 150_000_000);
    }

    #[test]
    fn reducing_ten_percent_rounds_to_the_nearest_cent() {
        // 0.55 - 10% = 0.495 -> 0.50 (half away from zero).
        assert_eq!(apply_step(550_000, -1_000, 10_000), 500_000);
        // 0.54 - 10% = 0.486 -> 0.49.
        assert_eq!(apply_step(540_000, -1_000, 10_000), 490_000);
        // 1.00 - 10% = 0.90 exactly.
        assert_eq!(apply_step(1_000_000, -1_000, 10_000), 900_000);
    }

    #[test]
    fn raising_five_percent_rounds_to_the_nearest_cent() {
        // 0.55 + 5% = 0.5775 -> 0.58.
        assert_eq!(apply_step(550_000, 500, 10_000), 580_000);
        assert_eq!(apply_step(1_000_000, 500, 10_000), 1_050_000);
    }

    #[test]
    fn zero_decimal_currency_steps_round_to_whole_units() {
        // JPY 155 - 10% = 139.5 -> 140; + 5% = 162.75 -> 163.
        assert_eq!(apply_step(155_000_000, -1_000, 1_000_000), 140_000_000);
        assert_eq!(apply_step(155_000_000, 500, 1_000_000), 163_000_000);
    }

    #[test]
    fn a_step_smaller_than_one_unit_still_moves_one_unit() {
        // JPY 5 + 5% = 5.25 -> nearest 5 would cancel the raise; it becomes 6.
        assert_eq!(apply_step(5_000_000, 500, 1_000_000), 6_000_000);
        assert_eq!(apply_step(5_000_000, -500, 1_000_000), 4_000_000);
    }

    #[test]
    fn amounts_format_with_the_currency_digits() {
        assert_eq!(format_amount(4_500_000, 2), "4.50");
        assert_eq!(format_amount(139_000_000, 0), "139");
        assert_eq!(format_amount(-1_234_500, 3), "-1.235");
        assert_eq!(format_amount(1_234_499, 3), "1.234");
    }
}
