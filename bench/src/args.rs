//! `--key value` arguments, parsed by hand. Each scenario asks for the keys it knows; anything
//! left over is an error, so a misspelt option never goes unnoticed.

use std::collections::BTreeMap;
use std::str::FromStr;

pub struct Args {
    values: BTreeMap<String, String>,
}

impl Args {
    pub fn parse(raw: &[String]) -> Result<Args, String> {
        let mut values = BTreeMap::new();
        let mut it = raw.iter();
        while let Some(arg) = it.next() {
            let key = arg
                .strip_prefix("--")
                .filter(|k| !k.is_empty())
                .ok_or_else(|| format!("expected --key, got '{arg}'"))?;
            let value = it.next().ok_or_else(|| format!("--{key} needs a value"))?;
            if values.insert(key.to_string(), value.clone()).is_some() {
                return Err(format!("--{key} given twice"));
            }
        }
        Ok(Args { values })
    }

    /// The value of `--key`, or `default` when it was not given.
    pub fn get<T: FromStr>(&mut self, key: &str, default: T) -> Result<T, String> {
        Ok(self.optional(key)?.unwrap_or(default))
    }

    /// The value of `--key`, which must be given.
    pub fn required<T: FromStr>(&mut self, key: &str) -> Result<T, String> {
        self.optional(key)?
            .ok_or_else(|| format!("--{key} is required"))
    }

    pub fn optional<T: FromStr>(&mut self, key: &str) -> Result<Option<T>, String> {
        match self.values.remove(key) {
            None => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| format!("--{key}: cannot use '{v}'")),
        }
    }

    /// Fails on any key no scenario asked for.
    pub fn finish(self) -> Result<(), String> {
        match self.values.keys().next() {
            None => Ok(()),
            Some(k) => Err(format!("unknown option --{k}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Result<Args, String> {
        Args::parse(&s.split_whitespace().map(String::from).collect::<Vec<_>>())
    }

    #[test]
    fn reads_values_and_defaults() {
        let mut a = args("--conns 50 --url ws://x/").unwrap();
        assert_eq!(a.get("conns", 1u32).unwrap(), 50);
        assert_eq!(a.get("secs", 5.0f64).unwrap(), 5.0);
        assert_eq!(a.required::<String>("url").unwrap(), "ws://x/");
        a.finish().unwrap();
    }

    #[test]
    fn rejects_bad_input() {
        assert!(args("conns 5").is_err());
        assert!(args("--conns").is_err());
        assert!(args("--conns 1 --conns 2").is_err());
        let mut a = args("--conns many --typo 1").unwrap();
        assert_eq!(
            a.get("conns", 1u32).unwrap_err(),
            "--conns: cannot use 'many'"
        );
        assert_eq!(a.finish().unwrap_err(), "unknown option --typo");
    }
}
