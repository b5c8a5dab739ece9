//! A broker that fails, delays or hangs chosen sends: the relay's seam
//! (`outbox::relay::Broker`) wrapped around the real Kafka broker, so that the
//! relay meets faults a real broker produces only by luck, while everything it does publish
//! reaches the real broker.

use std::{
    future::Future,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::{future::BoxFuture, FutureExt};
use outbox::{
    kafka::{KafkaBroker, KafkaConfig},
    relay::{Broker, Outgoing, Outlet, SendError},
};

/// What happens to one send instead of (or before) reaching the real broker.
#[derive(Clone)]
pub enum Injected {
    /// Fails at once with this error.
    Fail(SendError),
    /// Waits this long, then sends.
    Delay(Duration),
    /// Never answers.
    Hang,
    /// Goes to another broker (e.g. one that is unreachable) instead.
    Through(Arc<dyn Broker>),
}

type SendRule = Box<dyn Fn(&Outgoing<'_>) -> Option<Injected> + Send + Sync>;
type TopicRule = Box<dyn Fn(&str) -> Option<Injected> + Send + Sync>;

pub struct Faulty {
    real: Arc<dyn Broker>,
    sends: Mutex<Option<SendRule>>,
    topics: Mutex<Option<TopicRule>>,
}

impl Faulty {
    /// Wraps the real Kafka broker; no faults until a rule is set.
    pub fn kafka(kafka: &KafkaConfig) -> Arc<Self> {
        Arc::new(Self {
            real: Arc::new(kafka_broker(kafka)),
            sends: Mutex::new(None),
            topics: Mutex::new(None),
        })
    }

    /// Every send asks `rule` first; `None` sends normally.
    pub fn on_send(
        &self,
        rule: impl Fn(&Outgoing<'_>) -> Option<Injected> + Send + Sync + 'static,
    ) {
        *self.sends.lock().unwrap() = Some(Box::new(rule));
    }

    /// Every topic creation asks `rule` first.
    pub fn on_create_topic(&self, rule: impl Fn(&str) -> Option<Injected> + Send + Sync + 'static) {
        *self.topics.lock().unwrap() = Some(Box::new(rule));
    }

    /// No more faults.
    pub fn heal(&self) {
        *self.sends.lock().unwrap() = None;
        *self.topics.lock().unwrap() = None;
    }

    pub fn outlet(self: &Arc<Self>, kafka: &KafkaConfig) -> Outlet {
        Outlet::new(self.clone(), kafka.topics())
    }
}

impl Broker for Faulty {
    fn send<'a>(&'a self, event: Outgoing<'a>) -> BoxFuture<'a, Result<(), SendError>> {
        let injected = self
            .sends
            .lock()
            .unwrap()
            .as_ref()
            .and_then(|rule| rule(&event));
        inject(injected, self.real.send(event), move |other| async move {
            other.send(event).await
        })
        .boxed()
    }

    fn create_topic<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<(), SendError>> {
        let injected = self
            .topics
            .lock()
            .unwrap()
            .as_ref()
            .and_then(|rule| rule(topic));
        inject(
            injected,
            self.real.create_topic(topic),
            move |other| async move { other.create_topic(topic).await },
        )
        .boxed()
    }
}

/// Does what `injected` says instead of (or before) `real`; `elsewhere` goes to another broker.
async fn inject<Real, Elsewhere, Other>(
    injected: Option<Injected>,
    real: Real,
    elsewhere: Elsewhere,
) -> Result<(), SendError>
where
    Real: Future<Output = Result<(), SendError>>,
    Elsewhere: FnOnce(Arc<dyn Broker>) -> Other,
    Other: Future<Output = Result<(), SendError>>,
{
    match injected {
        None => real.await,
        Some(Injected::Fail(error)) => Err(error),
        Some(Injected::Delay(delay)) => {
            tokio::time::sleep(delay).await;
            real.await
        }
        Some(Injected::Hang) => std::future::pending().await,
        Some(Injected::Through(other)) => elsewhere(other).await,
    }
}

/// The relay's Kafka broker for `kafka`, with a producer of its own.
pub fn kafka_broker(kafka: &KafkaConfig) -> KafkaBroker {
    kafka_broker_timing_out_after(kafka, Duration::from_secs(10))
}

/// As [`kafka_broker`], giving up on a send after `timeout` (`message.timeout.ms`).
pub fn kafka_broker_timing_out_after(kafka: &KafkaConfig, timeout: Duration) -> KafkaBroker {
    let mut config = outbox::kafka::producer_config(kafka);
    config.set("message.timeout.ms", timeout.as_millis().to_string());
    let producer = outbox::kafka::Producer::new(config).expect("a producer");
    KafkaBroker::new(producer, kafka.clone())
}

/// A real Kafka client pointed at a port where no broker listens: every send fails as it
/// does when the broker is down (librdkafka times it out after `timeout`).
pub fn unreachable_broker(kafka: &KafkaConfig, timeout: Duration) -> Arc<dyn Broker> {
    let down = KafkaConfig {
        brokers: "127.0.0.1:1".into(),
        ..kafka.clone()
    };
    Arc::new(kafka_broker_timing_out_after(&down, timeout))
}
