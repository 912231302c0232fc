//! The read model's generations (see [`eventline_common::generations`]: rebuilt side by side,
//! swapped in, rolled back) as the query API sees them: the active generation's [`Store`] for
//! each query, one cheap lookup of the active row per request, and the store (its SQL) built
//! once per generation and kept.
//!
//! A request resolves the generation once and reads only its tables, so every part of one
//! answer comes from one generation even when a swap commits in the middle of it. The tables it
//! reads stay: a generation is dropped only when it goes from previous to retired, two swaps
//! after it was last active.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use eventline_common::generations::{Generation, GenerationError, Generations};

use crate::store::Store;

#[derive(Debug, Clone)]
pub struct ActiveStore {
    generations: Generations,
    stores: Arc<Mutex<BTreeMap<i64, Store>>>,
}

impl ActiveStore {
    pub fn new(generations: Generations) -> Self {
        Self { generations, stores: Arc::default() }
    }

    pub fn generations(&self) -> &Generations {
        &self.generations
    }

    /// The active generation and its store.
    pub async fn current(&self) -> Result<(Generation, Store), GenerationError> {
        let active = self.generations.active().await?;
        let store = self.store_of(active.generation);
        Ok((active, store))
    }

    /// The store of `generation` (built on first use).
    pub fn store_of(&self, generation: i64) -> Store {
        let mut stores = self.stores.lock().unwrap_or_else(PoisonError::into_inner);
        stores
            .entry(generation)
            .or_insert_with(|| Store::for_generation(self.generations.database().clone(), generation))
            .clone()
    }
}
