package promwsrpc

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wsrpc/wsrpc"
	"github.com/wsrpc/wsrpc/pubsub"
)

// pubsubMetrics are the wsrpc_pubsub_* series: what package pubsub
// reports to its Observer.
type pubsubMetrics struct {
	topics    *labelSet // nil: topics are no label
	published *prometheus.CounterVec
	queued    *prometheus.CounterVec
	delivered *prometheus.CounterVec
	dropped   *prometheus.CounterVec
	slow      prometheus.Counter
	brokerErr prometheus.Counter
	brokerUp  prometheus.Gauge
	lag       *prometheus.HistogramVec
}

// The reasons of wsrpc_pubsub_dropped_total.
var dropReasons = []string{"slow_subscriber", "subscriber_gone", "failed"}

func newPubSubMetrics(maxTopics int, buckets []float64) pubsubMetrics {
	var topic []string
	var ts *labelSet
	if maxTopics != 0 {
		topic = []string{"topic"}
		ts = &labelSet{max: maxTopics}
	}
	with := func(names ...string) []string { return append(names, topic...) }
	p := pubsubMetrics{
		topics: ts,
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wsrpc_pubsub_published_total",
			Help: "Events published on this node (by a client or the application) or received from the broker, one per topic.",
		}, with()),
		queued: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wsrpc_pubsub_queued_total",
			Help: "Events queued for local subscriptions: the published events times their subscriptions.",
		}, with()),
		delivered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wsrpc_pubsub_delivered_total",
			Help: "Events delivered: notifies answered by subscribers and calls of server-side subscriptions, by outcome (ok, or error: the subscriber answered with one).",
		}, with("outcome")),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wsrpc_pubsub_dropped_total",
			Help: "Events that did not reach a subscriber, by reason (slow_subscriber: its queue was full; subscriber_gone: its connection ended first; failed: the notify failed).",
		}, with("reason")),
		slow: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wsrpc_pubsub_slow_disconnects_total",
			Help: "Subscribers whose connection the slow-subscriber policy closed.",
		}),
		brokerErr: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wsrpc_pubsub_broker_errors_total",
			Help: "Broker failures: the link lost, a publish to the broker that failed, a message from it dropped.",
		}),
		brokerUp: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "wsrpc_pubsub_broker_up",
			Help: "1 while the node is subscribed to its broker, 0 while the link to it is down.",
		}),
		lag: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "wsrpc_pubsub_broker_lag_seconds",
			Help:    "How long ago the events that arrive from the broker were published on another wsrpc node, by this node's clock (clock skew included; 0 when this clock is behind). Events from nodes that do not stamp them (Python's) are not measured.",
			Buckets: buckets,
		}, with()),
	}
	if ts == nil {
		p.lag.WithLabelValues()
		p.delivered.WithLabelValues("ok")
		p.delivered.WithLabelValues("error")
		for _, r := range dropReasons {
			p.dropped.WithLabelValues(r)
		}
	}
	return p
}

func (p *pubsubMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{p.published, p.queued, p.delivered, p.dropped, p.slow, p.brokerErr, p.brokerUp, p.lag}
}

// labels returns the label values vs, and the topic's if topics are
// labels.
func (p *pubsubMetrics) labels(topic string, vs ...string) []string {
	if p.topics == nil {
		return vs
	}
	return append(vs, p.topics.label(topic))
}

var _ pubsub.Observer = (*Metrics)(nil)

// Published counts an event published on this node and the subscriptions
// it was queued for: it implements [pubsub.Observer].
func (m *Metrics) Published(topic string, subscriptions int) {
	l := m.pubsub.labels(topic)
	m.pubsub.published.WithLabelValues(l...).Inc()
	m.pubsub.queued.WithLabelValues(l...).Add(float64(subscriptions))
}

// Delivered counts an event delivered: it implements [pubsub.Observer].
func (m *Metrics) Delivered(_ *wsrpc.Conn, topic string, err error) {
	outcome := "ok"
	if err != nil {
		outcome = "error"
	}
	m.pubsub.delivered.WithLabelValues(m.pubsub.labels(topic, outcome)...).Inc()
}

// Dropped counts an event that did not reach a subscriber, by reason: it
// implements [pubsub.Observer].
func (m *Metrics) Dropped(_ *wsrpc.Conn, topic string, reason error) {
	r := "failed"
	switch {
	case errors.Is(reason, pubsub.ErrSlowSubscriber):
		r = "slow_subscriber"
	case errors.Is(reason, pubsub.ErrSubscriberGone):
		r = "subscriber_gone"
	}
	m.pubsub.dropped.WithLabelValues(m.pubsub.labels(topic, r)...).Inc()
}

// SlowDisconnect counts a subscriber closed by the slow-subscriber policy:
// it implements [pubsub.Observer].
func (m *Metrics) SlowDisconnect(*wsrpc.Conn) { m.pubsub.slow.Inc() }

// Broker counts a broker failure (err not nil) and sets
// wsrpc_pubsub_broker_up: it implements [pubsub.Observer].
func (m *Metrics) Broker(err error) {
	if err == nil {
		m.pubsub.brokerUp.Set(1)
		return
	}
	m.pubsub.brokerErr.Inc()
	if errors.Is(err, wsrpc.ErrBrokerUnavailable) {
		m.pubsub.brokerUp.Set(0)
	}
}

// BrokerLag records how long ago an event that arrived from the broker was
// published on another node: it implements [pubsub.Observer].
func (m *Metrics) BrokerLag(topic string, lag time.Duration) {
	m.pubsub.lag.WithLabelValues(m.pubsub.labels(topic)...).Observe(lag.Seconds())
}
