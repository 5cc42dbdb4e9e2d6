//! The micro-batch stream of a run: the training split's batches epoch after epoch, each epoch in
//! its own seeded order. Where it stands is the trainer state's `(epoch, batch_index)`, so a
//! resumed run continues with the very next micro-batch.

use std::path::PathBuf;

use gemma4_data::{Batch, Batcher};

use crate::checkpoint::TrainerState;
use crate::error::{Result, TrainError};

/// Micro-batches in training order.
pub struct MicroBatches {
    batcher: Batcher,
    seed: u64,
    /// The current epoch's batches, in order.
    epoch: Vec<Batch>,
    /// The training split (for errors).
    path: PathBuf,
}

impl MicroBatches {
    /// The stream at `state`'s epoch (its position is read and advanced in [`Self::next_step`]).
    pub fn new(batcher: Batcher, seed: u64, state: &TrainerState, path: PathBuf) -> Self {
        let epoch = batcher.epoch(state.epoch, seed);
        Self { batcher, seed, epoch, path }
    }

    /// The first micro-batch [`MicroBatches::next_step`] will give, without advancing; `None` at
    /// the end of an epoch.
    pub fn peek(&self, state: &TrainerState) -> Option<&Batch> {
        self.epoch.get(state.batch_index)
    }

    /// The next `count` micro-batches (one optimizer step's), advancing `state`'s data position
    /// (and its epoch when one ends).
    pub fn next_step(&mut self, count: usize, state: &mut TrainerState) -> Result<Vec<Batch>> {
        let mut micro = Vec::with_capacity(count.min(self.epoch.len().max(1)));
        while micro.len() < count {
            if state.batch_index >= self.epoch.len() {
                if self.epoch.is_empty() {
                    let path = self.path.display();
                    return Err(TrainError::Run(format!("{path}: no batch with target tokens")));
                }
                state.epoch += 1;
                state.batch_index = 0;
                self.epoch = self.batcher.epoch(state.epoch, self.seed);
            }
            micro.push(self.epoch[state.batch_index].clone());
            state.batch_index += 1;
        }
        Ok(micro)
    }
}
