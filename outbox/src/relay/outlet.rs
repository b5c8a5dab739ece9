//! What every database's relay in a process shares: the broker it sends to, the topics
//! created so far, whether the broker is away ([`Outage`]), and whether an operator holds the
//! relay ([`Hold`]). Built from any [`Broker`]: an adapter connects one, the core never does.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
};

use super::{Broker, Hold, Outage, SendError};
use crate::topics::TopicNames;

/// Topics known to exist. The local broker does not auto-create topics, so the relay creates
/// each topic the first time it sees its aggregate type.
#[derive(Debug, Default)]
pub struct Topics {
    known: Mutex<HashSet<String>>,
}

impl Topics {
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        // Only ever extended: a panic elsewhere cannot leave the set torn.
        self.known.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn is_known(&self, topic: &str) -> bool {
        self.lock().contains(topic)
    }
}

/// What every database's relay in a process shares: the broker, the topics created so far,
/// whether the broker is away, and whether an operator holds the relay.
#[derive(Clone)]
pub struct Outlet {
    pub broker: Arc<dyn Broker>,
    pub names: TopicNames,
    pub topics: Arc<Topics>,
    pub outage: Outage,
    pub hold: Hold,
}

impl Outlet {
    pub fn new(broker: Arc<dyn Broker>, names: TopicNames) -> Self {
        Self {
            broker,
            names,
            topics: Arc::default(),
            outage: Outage::default(),
            hold: Hold::default(),
        }
    }

    /// Creates the topics, one by one; the ones that could not be created, with why.
    pub(super) async fn create_topics(
        &self,
        topics: HashSet<String>,
    ) -> HashMap<String, SendError> {
        let mut failed = HashMap::new();
        for topic in topics {
            match self.broker.create_topic(&topic).await {
                Ok(()) => {
                    self.topics.lock().insert(topic);
                }
                Err(error) => {
                    tracing::warn!(%topic, %error, "topic could not be created");
                    failed.insert(topic, error);
                }
            }
        }
        failed
    }
}
