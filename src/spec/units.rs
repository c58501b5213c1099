//! Docker's units: memory sizes and CPU shares.

/// Parses a memory size with Docker's units into bytes.
pub(crate) fn parse_memory(s: &str) -> std::result::Result<i64, String> {
    let t = s.trim().to_ascii_lowercase();
    let t = t
        .strip_suffix("ib")
        .or_else(|| t.strip_suffix('b'))
        .unwrap_or(&t);
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let mult: f64 = match unit {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        "t" => 1024.0_f64.powi(4),
        _ => {
            return Err(
                "expected a number with an optional unit b, k, m, g or t (e.g. 512m, 1g)".into(),
            );
        }
    };
    let n: f64 = num.parse().map_err(|_| {
        "expected a number with an optional unit b, k, m, g or t (e.g. 512m, 1g)".to_owned()
    })?;
    let bytes = n * mult;
    if !bytes.is_finite() || bytes > i64::MAX as f64 {
        return Err("too large".into());
    }
    if bytes < 6.0 * 1024.0 * 1024.0 {
        return Err("Docker requires at least 6m".into());
    }
    Ok(bytes as i64)
}

/// Parses cores (`0.5`) or millicores (`500m`) into Docker's NanoCpus.
pub(crate) fn parse_cpus(s: &str) -> std::result::Result<i64, String> {
    let t = s.trim();
    let cores = match t.strip_suffix('m') {
        Some(milli) => milli.parse::<f64>().map(|m| m / 1000.0),
        None => t.parse::<f64>(),
    }
    .map_err(|_| "expected cores (`0.5`, `2`) or millicores (`500m`)".to_owned())?;
    if !cores.is_finite() || cores < 0.01 {
        return Err("must be at least 0.01 cores (10m)".into());
    }
    if cores > 1024.0 {
        return Err("more than 1024 cores".into());
    }
    Ok((cores * 1e9).round() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_units() {
        assert_eq!(parse_memory("512m"), Ok(512 << 20));
        assert_eq!(parse_memory("1g"), Ok(1 << 30));
        assert_eq!(parse_memory("1GB"), Ok(1 << 30));
        assert_eq!(parse_memory("64MiB"), Ok(64 << 20));
        assert_eq!(parse_memory("8388608"), Ok(8 << 20));
        assert!(parse_memory("1m").is_err());
        assert!(parse_memory("12x").is_err());
        assert!(parse_memory("").is_err());
    }

    #[test]
    fn cpu_units() {
        assert_eq!(parse_cpus("0.5"), Ok(500_000_000));
        assert_eq!(parse_cpus("500m"), Ok(500_000_000));
        assert_eq!(parse_cpus("2"), Ok(2_000_000_000));
        assert!(parse_cpus("0").is_err());
        assert!(parse_cpus("5m").is_err());
        assert!(parse_cpus("one").is_err());
    }
}
