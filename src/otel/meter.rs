//! The SDK's [`CoreMeter`] hook, backed by a meter whose provider we hold (and so can
//! flush at the end of every invocation). The SDK's own `otel` feature keeps its provider
//! private; this adapter keeps the SDK's metric names and labels and nothing else.

use std::{collections::HashMap, sync::Arc, time::Duration};

use opentelemetry::{
    KeyValue,
    metrics::{Counter as OtelCounter, Gauge, Histogram, Meter, UpDownCounter as OtelUpDown},
};
use temporalio_common::telemetry::metrics::{
    Counter, CounterBase, Gauge as CoreGauge, GaugeBase, GaugeF64, GaugeF64Base,
    Histogram as CoreHistogram, HistogramBase, HistogramDuration, HistogramDurationBase,
    HistogramF64, HistogramF64Base, MetricAttributable, MetricAttributes, MetricParameters,
    NewAttributes, UpDownCounter, UpDownCounterBase,
};

use crate::CoreMeter;

/// A [`CoreMeter`] recording into an OpenTelemetry [`Meter`]. Durations are recorded in
/// milliseconds, like the SDK's own exporters.
#[derive(Debug)]
pub(crate) struct OtelCoreMeter {
    meter: Meter,
}

impl OtelCoreMeter {
    pub(crate) fn new(meter: Meter) -> Self {
        Self { meter }
    }
}

/// The labels carried by attributes this meter made (stored as strings).
fn key_values(attributes: &MetricAttributes) -> Vec<KeyValue> {
    match attributes {
        MetricAttributes::NoOp(labels) => labels
            .iter()
            .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
            .collect(),
        _ => Vec::new(),
    }
}

/// An OpenTelemetry instrument the SDK binds to attributes.
struct Instrument<T>(T);
/// An instrument bound to its labels.
struct Bound<T> {
    instrument: T,
    labels: Vec<KeyValue>,
}
/// A `u64` histogram recording durations in milliseconds.
#[derive(Clone)]
struct Millis(Histogram<u64>);

macro_rules! instrument {
    ($base:ident, $otel:ty, $method:ident($value:ty), |$i:ident, $v:ident, $l:ident| $record:expr) => {
        impl MetricAttributable<Box<dyn $base>> for Instrument<$otel> {
            fn with_attributes(
                &self,
                attributes: &MetricAttributes,
            ) -> Result<Box<dyn $base>, Box<dyn std::error::Error>> {
                Ok(Box::new(Bound {
                    instrument: self.0.clone(),
                    labels: key_values(attributes),
                }))
            }
        }
        impl $base for Bound<$otel> {
            fn $method(&self, $v: $value) {
                let ($i, $l) = (&self.instrument, &self.labels[..]);
                $record
            }
        }
    };
}

instrument!(CounterBase, OtelCounter<u64>, adds(u64), |i, v, l| i
    .add(v, l));
instrument!(HistogramBase, Histogram<u64>, records(u64), |i, v, l| i
    .record(v, l));
instrument!(HistogramF64Base, Histogram<f64>, records(f64), |i, v, l| i
    .record(v, l));
instrument!(
    HistogramDurationBase,
    Millis,
    records(Duration),
    |i, v, l| i
        .0
        .record(u64::try_from(v.as_millis()).unwrap_or(u64::MAX), l)
);
instrument!(GaugeBase, Gauge<u64>, records(u64), |i, v, l| i
    .record(v, l));
instrument!(GaugeF64Base, Gauge<f64>, records(f64), |i, v, l| i
    .record(v, l));
instrument!(UpDownCounterBase, OtelUpDown<i64>, adds(i64), |i, v, l| i
    .add(v, l));

impl CoreMeter for OtelCoreMeter {
    fn new_attributes(&self, attribs: NewAttributes) -> MetricAttributes {
        MetricAttributes::NoOp(Arc::new(attribs.into()))
    }

    fn extend_attributes(
        &self,
        existing: MetricAttributes,
        attribs: NewAttributes,
    ) -> MetricAttributes {
        let mut labels = match existing {
            MetricAttributes::NoOp(labels) => Arc::unwrap_or_clone(labels),
            _ => HashMap::new(),
        };
        labels.extend(HashMap::<String, String>::from(attribs));
        MetricAttributes::NoOp(Arc::new(labels))
    }

    fn counter(&self, p: MetricParameters) -> Counter {
        let c = self.meter.u64_counter(p.name).with_unit(p.unit);
        Counter::new(Arc::new(Instrument(
            c.with_description(p.description).build(),
        )))
    }

    fn histogram(&self, p: MetricParameters) -> CoreHistogram {
        let h = self.meter.u64_histogram(p.name).with_unit(p.unit);
        CoreHistogram::new(Arc::new(Instrument(
            h.with_description(p.description).build(),
        )))
    }

    fn histogram_f64(&self, p: MetricParameters) -> HistogramF64 {
        let h = self.meter.f64_histogram(p.name).with_unit(p.unit);
        HistogramF64::new(Arc::new(Instrument(
            h.with_description(p.description).build(),
        )))
    }

    fn histogram_duration(&self, p: MetricParameters) -> HistogramDuration {
        let h = self.meter.u64_histogram(p.name).with_unit("ms");
        let h = Millis(h.with_description(p.description).build());
        HistogramDuration::new(Arc::new(Instrument(h)))
    }

    fn gauge(&self, p: MetricParameters) -> CoreGauge {
        let g = self.meter.u64_gauge(p.name).with_unit(p.unit);
        CoreGauge::new(Arc::new(Instrument(
            g.with_description(p.description).build(),
        )))
    }

    fn gauge_f64(&self, p: MetricParameters) -> GaugeF64 {
        let g = self.meter.f64_gauge(p.name).with_unit(p.unit);
        GaugeF64::new(Arc::new(Instrument(
            g.with_description(p.description).build(),
        )))
    }

    fn up_down_counter(&self, p: MetricParameters) -> UpDownCounter {
        let u = self.meter.i64_up_down_counter(p.name).with_unit(p.unit);
        UpDownCounter::new(Arc::new(Instrument(
            u.with_description(p.description).build(),
        )))
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::metrics::MeterProvider;
    use opentelemetry_sdk::metrics::{
        InMemoryMetricExporter, PeriodicReader, SdkMeterProvider,
        data::{AggregatedMetrics, MetricData},
    };
    use temporalio_common::telemetry::metrics::MetricKeyValue;

    use super::*;

    #[test]
    fn sdk_counters_keep_their_name_and_labels() {
        let exporter = InMemoryMetricExporter::default();
        let provider = SdkMeterProvider::builder()
            .with_reader(PeriodicReader::builder(exporter.clone()).build())
            .build();
        let meter = OtelCoreMeter::new(provider.meter("test"));
        let base = meter.new_attributes(NewAttributes::new(vec![MetricKeyValue::new(
            "namespace",
            "default",
        )]));
        let attrs = meter.extend_attributes(
            base,
            NewAttributes::new(vec![MetricKeyValue::new("task_queue", "tq")]),
        );
        let counter = meter.counter("temporal_request".into());
        counter.add(2, &attrs);
        counter.add(3, &attrs);
        meter
            .histogram_duration("temporal_request_latency".into())
            .record(Duration::from_millis(42), &attrs);
        provider.force_flush().unwrap();

        let exported = exporter.get_finished_metrics().unwrap();
        let metrics: Vec<_> = exported
            .iter()
            .flat_map(|rm| rm.scope_metrics())
            .flat_map(|sm| sm.metrics())
            .collect();
        let request = metrics
            .iter()
            .find(|m| m.name() == "temporal_request")
            .expect("the counter was exported");
        let AggregatedMetrics::U64(MetricData::Sum(sum)) = request.data() else {
            panic!("not a u64 sum: {:?}", request.data());
        };
        let point = sum.data_points().next().unwrap();
        assert_eq!(point.value(), 5);
        let mut labels: Vec<_> = point
            .attributes()
            .map(|kv| format!("{}={}", kv.key, kv.value))
            .collect();
        labels.sort();
        assert_eq!(labels, ["namespace=default", "task_queue=tq"]);
        let latency = metrics
            .iter()
            .find(|m| m.name() == "temporal_request_latency")
            .unwrap();
        assert_eq!(latency.unit(), "ms");
    }
}
