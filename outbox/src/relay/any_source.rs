//! Any [`Source`] behind one type, so that a process chooses how it reads its outboxes when it
//! starts (the shop's `RELAY_MODE`: the table, polled, or the WAL) and [`super::Relays`] holds
//! relays of either kind. The relay core stays generic over its source; only this wrapper
//! boxes, once per claim and mark, which costs nothing next to a round trip to the broker.

use std::{any::Any, sync::Arc, time::Duration};

use futures::future::BoxFuture;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{Batch, Marks, RelayError, Source, Stats};

/// A claim of the source inside: only that source's mark takes it back.
pub type AnyHeld = Box<dyn Any + Send + Sync>;

/// A [`Source`] of any type. Cheap to clone: every clone is the same source.
#[derive(Clone)]
pub struct AnySource(Arc<dyn Erased>);

impl AnySource {
    pub fn new(source: impl Source) -> Self {
        Self(Arc::new(source))
    }
}

/// [`Source`] with its futures boxed and its claim type erased.
trait Erased: Send + Sync {
    fn claim(&self, limit: i64) -> BoxFuture<'_, Result<Option<Batch<AnyHeld>>, RelayError>>;
    fn mark(&self, held: AnyHeld, marks: Marks) -> BoxFuture<'_, Result<(), RelayError>>;
    fn stats(&self) -> BoxFuture<'_, Result<Stats, RelayError>>;
    fn delete_expired(
        &self,
        retention: Duration,
        batch: i64,
    ) -> BoxFuture<'_, Result<u64, RelayError>>;
    fn run(&self, shutdown: CancellationToken) -> BoxFuture<'static, ()>;
    fn wake(&self) -> Option<Arc<Notify>>;
}

impl<S: Source> Erased for S {
    fn claim(&self, limit: i64) -> BoxFuture<'_, Result<Option<Batch<AnyHeld>>, RelayError>> {
        Box::pin(async move {
            Ok(Source::claim(self, limit).await?.map(|batch| Batch {
                held: Box::new(batch.held) as AnyHeld,
                chains: batch.chains,
                deferred: batch.deferred,
            }))
        })
    }

    fn mark(&self, held: AnyHeld, marks: Marks) -> BoxFuture<'_, Result<(), RelayError>> {
        Box::pin(async move {
            let held = held
                .downcast::<S::Held>()
                .map_err(|_| RelayError::Source("a claim of another source was marked".into()))?;
            Source::mark(self, *held, marks).await
        })
    }

    fn stats(&self) -> BoxFuture<'_, Result<Stats, RelayError>> {
        Box::pin(Source::stats(self))
    }

    fn delete_expired(
        &self,
        retention: Duration,
        batch: i64,
    ) -> BoxFuture<'_, Result<u64, RelayError>> {
        Box::pin(Source::delete_expired(self, retention, batch))
    }

    fn run(&self, shutdown: CancellationToken) -> BoxFuture<'static, ()> {
        Box::pin(Source::run(self.clone(), shutdown))
    }

    fn wake(&self) -> Option<Arc<Notify>> {
        Source::wake(self)
    }
}

impl Source for AnySource {
    type Held = AnyHeld;

    async fn claim(&self, limit: i64) -> Result<Option<Batch<AnyHeld>>, RelayError> {
        self.0.claim(limit).await
    }

    async fn mark(&self, held: AnyHeld, marks: Marks) -> Result<(), RelayError> {
        self.0.mark(held, marks).await
    }

    async fn stats(&self) -> Result<Stats, RelayError> {
        self.0.stats().await
    }

    async fn delete_expired(&self, retention: Duration, batch: i64) -> Result<u64, RelayError> {
        self.0.delete_expired(retention, batch).await
    }

    fn run(self, shutdown: CancellationToken) -> impl std::future::Future<Output = ()> + Send {
        self.0.run(shutdown)
    }

    fn wake(&self) -> Option<Arc<Notify>> {
        self.0.wake()
    }
}
