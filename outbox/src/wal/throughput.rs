//! The WAL relay's recent throughput: no row records when an event went out, so the status
//! page's rate is counted as the marks happen.

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

/// The span over which `published_per_second` is counted, as the polling relay counts it.
const RATE_SPAN: Duration = Duration::from_secs(10);

/// Events published from the stream, per mark, over the last [`RATE_SPAN`].
#[derive(Debug, Default)]
pub(super) struct Throughput {
    marks: VecDeque<(Instant, usize)>,
}

impl Throughput {
    pub fn record(&mut self, published: usize) {
        if published > 0 {
            self.marks.push_back((Instant::now(), published));
        }
        self.forget_old();
    }

    pub fn per_second(&mut self) -> f64 {
        self.forget_old();
        let events: usize = self.marks.iter().map(|(_, n)| n).sum();
        events as f64 / RATE_SPAN.as_secs_f64()
    }

    fn forget_old(&mut self) {
        while self
            .marks
            .front()
            .is_some_and(|(at, _)| at.elapsed() > RATE_SPAN)
        {
            self.marks.pop_front();
        }
    }
}
