//! Splitting a plan over independent workers (`--shard i/n`, or a Slurm job array), so a
//! cluster runs a sweep as an array job and the aggregator merges the run directories.

use std::fmt;
use std::str::FromStr;

use anyhow::{Context, Result, bail};

use super::plan::RunSpec;

/// Worker `index` (0-based) of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This worker, `0..count`.
    pub index: usize,
    /// Number of workers.
    pub count: usize,
}

impl Shard {
    /// The whole plan in one worker.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// Worker `index` of `count`, checked.
    pub fn new(index: usize, count: usize) -> Result<Self> {
        if count == 0 || index >= count {
            bail!("shard {index}/{count}: need 0 <= i < n (shards are numbered from 0)");
        }
        Ok(Self { index, count })
    }

    /// The shard of a Slurm array task: `SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN` of
    /// `SLURM_ARRAY_TASK_COUNT`; `None` outside an array job.
    pub fn from_slurm_env() -> Result<Option<Self>> {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Option<Self>> {
        let (Some(id), Some(count)) = (get("SLURM_ARRAY_TASK_ID"), get("SLURM_ARRAY_TASK_COUNT"))
        else {
            return Ok(None);
        };
        let num = |name: &str, v: &str| -> Result<usize> {
            v.trim()
                .parse()
                .with_context(|| format!("{name}={v} is not a non-negative integer"))
        };
        let id = num("SLURM_ARRAY_TASK_ID", &id)?;
        let count = num("SLURM_ARRAY_TASK_COUNT", &count)?;
        let min = match get("SLURM_ARRAY_TASK_MIN") {
            Some(v) => num("SLURM_ARRAY_TASK_MIN", &v)?,
            None => 0,
        };
        let index = id.checked_sub(min).with_context(|| {
            format!("SLURM_ARRAY_TASK_ID {id} is below SLURM_ARRAY_TASK_MIN {min}")
        })?;
        Self::new(index, count)
            .context("a Slurm array for `reproduce` must be contiguous, e.g. --array=0-3")
            .map(Some)
    }

    /// Ids of the runs this shard owns. Runs are dealt longest-first to the least-loaded
    /// shard (by [`RunSpec::cost`]), so shards get similar work; every shard computes the same
    /// assignment from the same plan. Dependencies owned by another shard are waited for.
    pub fn assign<'a>(&self, plan: &'a [RunSpec]) -> Vec<&'a RunSpec> {
        let mut order: Vec<usize> = (0..plan.len()).collect();
        order.sort_by(|&a, &b| plan[b].cost().total_cmp(&plan[a].cost()).then(a.cmp(&b)));
        let mut load = vec![0.0f64; self.count];
        let mut owner = vec![0usize; plan.len()];
        for i in order {
            let (k, _) = load
                .iter()
                .enumerate()
                .min_by(|a, b| a.1.total_cmp(b.1).then(a.0.cmp(&b.0)))
                .unwrap_or((0, &0.0));
            load[k] += plan[i].cost();
            owner[i] = k;
        }
        plan.iter()
            .zip(owner)
            .filter(|(_, k)| *k == self.index)
            .map(|(r, _)| r)
            .collect()
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        let (i, n) = s
            .split_once('/')
            .with_context(|| format!("--shard `{s}`: expected i/n, e.g. 0/4"))?;
        let parse = |v: &str| -> Result<usize> {
            v.trim()
                .parse()
                .with_context(|| format!("--shard `{s}`: `{v}` is not a number"))
        };
        Self::new(parse(i)?, parse(n)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reproduce::plan::{Budget, SweepConfig, Target};
    use std::collections::{BTreeMap, BTreeSet};

    #[test]
    fn parses_and_rejects() {
        assert_eq!("1/3".parse::<Shard>().unwrap(), Shard::new(1, 3).unwrap());
        for bad in ["3/3", "1", "a/2", "0/0", "-1/2"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }

    #[test]
    fn slurm_variables() {
        let env = |pairs: &'static [(&str, &str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(Shard::from_vars(env(&[])).unwrap(), None);
        let s = Shard::from_vars(env(&[
            ("SLURM_ARRAY_TASK_ID", "5"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
            ("SLURM_ARRAY_TASK_MIN", "4"),
        ]))
        .unwrap();
        assert_eq!(s, Some(Shard::new(1, 3).unwrap()));
        assert!(
            Shard::from_vars(env(&[
                ("SLURM_ARRAY_TASK_ID", "x"),
                ("SLURM_ARRAY_TASK_COUNT", "3")
            ]))
            .is_err()
        );
        assert!(
            Shard::from_vars(env(&[
                ("SLURM_ARRAY_TASK_ID", "3"),
                ("SLURM_ARRAY_TASK_COUNT", "3")
            ]))
            .is_err()
        );
    }

    #[test]
    fn shards_partition_the_plan_evenly() {
        let cfg = SweepConfig {
            model: "s4d-16h".into(),
            dataset: datasets::DatasetName::Embedded,
            seeds: 3,
            budget: Budget::quick(),
        };
        let plan = cfg.plan(&Target::ALL).unwrap();
        let n = 4;
        let mut owner = BTreeMap::new();
        let mut loads = Vec::new();
        for i in 0..n {
            let shard = Shard::new(i, n).unwrap();
            let mine = shard.assign(&plan);
            loads.push(mine.iter().map(|r| r.cost()).sum::<f64>());
            for r in mine {
                assert!(owner.insert(r.id.clone(), i).is_none(), "{} twice", r.id);
            }
        }
        let all: BTreeSet<_> = plan.iter().map(|r| r.id.clone()).collect();
        assert_eq!(owner.keys().cloned().collect::<BTreeSet<_>>(), all);
        let (lo, hi) = (
            loads.iter().cloned().fold(f64::INFINITY, f64::min),
            loads.iter().cloned().fold(0.0, f64::max),
        );
        assert!(hi / lo < 1.2, "unbalanced shards: {loads:?}");
        assert_eq!(Shard::ALL.assign(&plan).len(), plan.len());
    }
}
