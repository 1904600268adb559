//! The manifests in force. A reload swaps them whole; every stage takes the current
//! catalog once per unit of work (a decoded batch, an effect command), so work already
//! under way finishes on the programs it started with.

use std::sync::Arc;

use parking_lot::RwLock;

use crate::effects::EffectCatalog;
use crate::manifest::SagaCatalog;

pub struct Catalogs {
    sagas: RwLock<Arc<SagaCatalog>>,
    effects: RwLock<Arc<EffectCatalog>>,
}

impl Catalogs {
    pub fn new(sagas: Arc<SagaCatalog>, effects: Arc<EffectCatalog>) -> Arc<Catalogs> {
        Arc::new(Catalogs {
            sagas: RwLock::new(sagas),
            effects: RwLock::new(effects),
        })
    }

    pub fn sagas(&self) -> Arc<SagaCatalog> {
        self.sagas.read().clone()
    }

    pub fn effects(&self) -> Arc<EffectCatalog> {
        self.effects.read().clone()
    }

    /// Puts both catalogs in force; readers see either the old pair's members or the new.
    pub fn replace(&self, sagas: Arc<SagaCatalog>, effects: Arc<EffectCatalog>) {
        *self.sagas.write() = sagas;
        *self.effects.write() = effects;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reader_keeps_the_catalog_it_took() {
        let catalogs = Catalogs::new(Arc::default(), Arc::default());
        let before = catalogs.sagas();
        let replacement = Arc::new(SagaCatalog::default());
        catalogs.replace(replacement.clone(), Arc::default());
        assert!(!Arc::ptr_eq(&before, &catalogs.sagas()));
        assert!(Arc::ptr_eq(&replacement, &catalogs.sagas()));
    }
}
