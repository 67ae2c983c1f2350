//! Numbers in the JSON output: measured values computed in binary floating
//! point (a mean, a rate) are written to 9 significant digits, so a
//! reader sees `113939.835`, not `113939.83499999998`: far more digits than
//! any measurement here holds, and none of the conversion noise.

use serde::Serializer;

/// Significant digits a computed value keeps in the JSON output.
const DIGITS: usize = 9;

/// `v` rounded to [`DIGITS`] significant digits (non-finite values as they are).
pub(crate) fn round(v: f64) -> f64 {
    if !v.is_finite() || v == 0.0 {
        return v;
    }
    format!("{v:.*e}", DIGITS - 1).parse().unwrap_or(v)
}

/// `serialize_with` for a computed `f64`: see the module.
pub(crate) fn rounded<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(round(*v))
}

/// `serialize_with` for a computed `Option<f64>`.
pub(crate) fn rounded_opt<S: Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.serialize_some(&round(*v)),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversion_noise_is_dropped_and_the_measurement_kept() {
        assert_eq!(round(113_939.834_999_999_98), 113_939.835);
        assert_eq!(round(165.333_333_333_333_31), 165.333_333);
        assert_eq!(round(85_665.334_094_802_97), 85_665.334_1);
        assert_eq!(round(0.035_02), 0.035_02);
        assert_eq!(round(1e-7 / 3.0), 3.333_333_33e-8);
        assert_eq!(round(0.0), 0.0);
        assert_eq!(round(2.5e12), 2.5e12);
        assert!(round(f64::NAN).is_nan());
    }

    #[test]
    fn json_of_a_rounded_field_has_no_noise_digits() {
        #[derive(serde::Serialize)]
        struct Row {
            #[serde(serialize_with = "rounded")]
            mean: f64,
            #[serde(serialize_with = "rounded_opt")]
            rate: Option<f64>,
            #[serde(serialize_with = "rounded_opt")]
            none: Option<f64>,
        }
        let row = Row {
            mean: 113_939.834_999_999_98,
            rate: Some(2.0 / 3.0),
            none: None,
        };
        assert_eq!(
            serde_json::to_string(&row).unwrap(),
            r#"{"mean":113939.835,"rate":0.666666667,"none":null}"#
        );
    }
}
