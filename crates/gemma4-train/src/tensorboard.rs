//! TensorBoard event files (`[train] tensorboard = true`): every record `metrics.jsonl` gets is
//! also written as scalars to `<out_dir>/tensorboard/events.out.tfevents.*`, so
//! `tensorboard --logdir runs` shows the curves of several runs side by side. The file format
//! (TFRecord framing, TensorFlow's `Event`/`Summary` messages) is the `tfrecord` crate's.
//!
//! Tags: `train/loss`, `train/lr`, `train/grad_norm`, `train/tokens_per_s`, … (every number of
//! a train record but its step) and `valid/loss`, `valid/ppl`. Each process writes its own file
//! (never one it did not create); a resumed run starts its file with a `SessionLog` START at the
//! first step it will write, which is how TensorBoard learns to drop the steps a killed run had
//! logged past its checkpoint (they are produced again).

use std::fs::{File, OpenOptions};
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tfrecord::protobuf::event::What;
use tfrecord::protobuf::session_log::SessionStatus;
use tfrecord::protobuf::summary::{Value as SummaryValue, value};
use tfrecord::protobuf::{Event, SessionLog, Summary};
use tfrecord::{EventWriter, EventWriterConfig};

use crate::error::{Result, TrainError};

/// The directory of a run's event files.
pub fn dir(out: &Path) -> PathBuf {
    out.join("tensorboard")
}

/// One process's event file.
pub struct Board {
    path: PathBuf,
    writer: EventWriter<BufWriter<File>>,
}

impl Board {
    /// Start a new event file in `dir(out)`. `resumed_after = Some(n)`: the run resumes after
    /// step `n`, so TensorBoard drops earlier files' steps from `n + 1` on.
    pub fn create(out: &Path, resumed_after: Option<usize>) -> Result<Self> {
        let dir = dir(out);
        std::fs::create_dir_all(&dir).map_err(|source| io(&dir, source))?;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let (path, file) = (0..100)
            .find_map(|n| {
                let name = format!(
                    "events.out.tfevents.{}.gemma4-tune.{}{}",
                    now.as_secs(),
                    std::process::id(),
                    if n == 0 { String::new() } else { format!(".{n}") }
                );
                let path = dir.join(name);
                // `create_new`: never write into a file this process did not make.
                OpenOptions::new().write(true).create_new(true).open(&path).ok().map(|f| (path, f))
            })
            .ok_or_else(|| TrainError::Run(format!("{}: no new event file name", dir.display())))?;
        let config = EventWriterConfig { auto_flush: true };
        let writer = EventWriter::from_writer(BufWriter::new(file), config)
            .map_err(|e| tf_error(&path, e))?;
        let mut board = Self { path, writer };
        let wall_time = now.as_secs_f64();
        board.write(Event {
            wall_time,
            step: 0,
            source_metadata: None,
            what: Some(What::FileVersion("brain.Event:2".into())),
        })?;
        if let Some(n) = resumed_after {
            let start = SessionLog { status: SessionStatus::Start as i32, ..Default::default() };
            let step = n as i64 + 1;
            board.write(Event {
                wall_time,
                step,
                source_metadata: None,
                what: Some(What::SessionLog(start)),
            })?;
        }
        Ok(board)
    }

    /// The numbers of one metrics record as one event at its `step` (a record without a step,
    /// or without numbers, writes nothing).
    pub fn record(&mut self, record: &Value) -> Result<()> {
        let (Some(step), Some(fields)) = (record["step"].as_i64(), record.as_object()) else {
            return Ok(());
        };
        let value: Vec<SummaryValue> = fields
            .iter()
            .filter(|(key, _)| key.as_str() != "step")
            .filter_map(|(key, v)| Some((tag(key), v.as_f64()? as f32)))
            .map(|(tag, v)| SummaryValue {
                tag,
                value: Some(value::Value::SimpleValue(v)),
                ..Default::default()
            })
            .collect();
        if value.is_empty() {
            return Ok(());
        }
        let wall_time =
            SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64();
        let what = Some(What::Summary(Summary { value }));
        self.write(Event { wall_time, step, source_metadata: None, what })
    }

    fn write(&mut self, event: Event) -> Result<()> {
        self.writer.write_event(event).map_err(|e| tf_error(&self.path, e))
    }
}

/// `val_loss` → `valid/loss`; `loss` → `train/loss`.
fn tag(key: &str) -> String {
    match key.strip_prefix("val_") {
        Some(rest) => format!("valid/{rest}"),
        None => format!("train/{key}"),
    }
}

fn io(path: &Path, source: std::io::Error) -> TrainError {
    TrainError::Io { path: path.to_owned(), source }
}

fn tf_error(path: &Path, e: tfrecord::Error) -> TrainError {
    TrainError::Run(format!("{}: writing a TensorBoard event: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use tfrecord::{EventIter, RecordReaderConfig};

    use super::*;

    /// Read back every event of the files in `dir(out)`, in file-name order.
    fn events(out: &Path) -> Vec<Event> {
        let mut files: Vec<PathBuf> =
            std::fs::read_dir(dir(out)).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        files
            .iter()
            .flat_map(|f| EventIter::open(f, RecordReaderConfig::default()).unwrap())
            .map(|e| e.unwrap())
            .collect()
    }

    fn scalars(e: &Event) -> Vec<(String, f32)> {
        match &e.what {
            Some(What::Summary(s)) => s
                .value
                .iter()
                .map(|v| match v.value {
                    Some(value::Value::SimpleValue(x)) => (v.tag.clone(), x),
                    _ => panic!("not a scalar: {v:?}"),
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    #[test]
    fn records_become_tagged_scalars_at_their_step_and_a_resume_marks_its_restart() {
        let out = tempfile::tempdir().unwrap();
        let mut board = Board::create(out.path(), None).unwrap();
        board.record(&json!({"step": 0, "val_loss": 3.5, "val_ppl": 33.1})).unwrap();
        board.record(&json!({"step": 10, "loss": 2.25, "lr": 1e-4, "note": "x"})).unwrap();
        board.record(&json!({"no_step": 1.0})).unwrap();
        drop(board);
        let resumed = Board::create(out.path(), Some(10)).unwrap();
        drop(resumed);

        let all = events(out.path());
        let versions: Vec<&Event> = all
            .iter()
            .filter(|e| matches!(&e.what, Some(What::FileVersion(v)) if v == "brain.Event:2"))
            .collect();
        assert_eq!(versions.len(), 2, "one file_version event per file: {all:?}");
        let steps: Vec<(i64, Vec<(String, f32)>)> =
            all.iter().filter(|e| !scalars(e).is_empty()).map(|e| (e.step, scalars(e))).collect();
        assert_eq!(
            steps,
            vec![
                (0, vec![("valid/loss".into(), 3.5), ("valid/ppl".into(), 33.1)]),
                (10, vec![("train/loss".into(), 2.25), ("train/lr".into(), 1e-4)]),
            ]
        );
        let restart: Vec<i64> = all
            .iter()
            .filter(|e| matches!(&e.what, Some(What::SessionLog(s)) if s.status == SessionStatus::Start as i32))
            .map(|e| e.step)
            .collect();
        assert_eq!(restart, vec![11]);
    }
}
