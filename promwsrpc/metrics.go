package promwsrpc

import (
	"context"
	"errors"
	"math"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wsrpc/wsrpc"
)

// Defaults for [Options].
const (
	DefaultMaxMethods = 1000
	DefaultMaxCodes   = 100
)

// DefaultBuckets are the upper bounds, in seconds, of the histograms'
// buckets unless [Options].Buckets sets others: from 100 µs,
// a call over a local network, to 10 s, Prometheus's DefBuckets with four
// more below 5 ms.
var DefaultBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// Options configures a [Metrics]. The zero value, or nil, means every
// default.
type Options struct {
	// MaxMethods caps the distinct values of the method label: the first
	// MaxMethods method names seen get their own, the calls of any other
	// count under "other". "unknown" (a refused call to an unknown method)
	// is always there and not counted. Zero means DefaultMaxMethods
	// (1000); negative: no cap.
	MaxMethods int
	// MaxCodes caps the distinct error codes outside wsrpc's own that get
	// a code label value of their own (their number); the others count
	// under "other". Zero means DefaultMaxCodes (100); negative: no cap.
	MaxCodes int
	// Buckets are the upper bounds, in seconds and in increasing order, of
	// the buckets of the handling-seconds histograms and of
	// wsrpc_pubsub_broker_lag_seconds. Nil means DefaultBuckets.
	Buckets []float64
	// TopicLabels, if not zero, makes the topic a label of the
	// wsrpc_pubsub_* series: the first TopicLabels topics seen get their
	// own value, any other counts under "other" (negative: no cap). Zero,
	// the default, means no topic label, since clients choose topics.
	TopicLabels int
}

// Metrics counts what the wsrpc connections it watches do, and reports it
// to Prometheus. It is a [wsrpc.Observer]: set it as the Observer of the
// [wsrpc.ConnOptions] of any number of Servers and Clients. It is a
// [pubsub.Observer] too: set it in [pubsub.Options] for the
// wsrpc_pubsub_* series. It is a
// [prometheus.Collector]: register it once, on a [prometheus.Registerer].
// The package doc lists the metrics.
//
// A Metrics is safe for concurrent use. Its Observer methods are meant to
// be called by wsrpc; calling them otherwise changes the metrics.
type Metrics struct {
	server, client calls // inbound and outbound calls
	refused        *prometheus.CounterVec

	connsOpen   prometheus.Gauge
	connsOpened prometheus.Counter
	connsClosed *prometheus.CounterVec
	tries       *prometheus.CounterVec

	framesIn, framesOut prometheus.Counter
	bytesIn, bytesOut   prometheus.Counter
	dropped             prometheus.Counter
	// The send queues' depth, in integers: an atomic add is cheaper than
	// a Gauge's compare-and-swap loop on a float, and the queue changes
	// twice per frame. Gauge funcs report them.
	queuedFrames, queuedBytes atomic.Int64

	methods labelSet // the method label values
	codes   labelSet // the code label values of codes outside wsrpc's own

	pubsub pubsubMetrics // wsrpc_pubsub_*

	all []prometheus.Collector // what Describe and Collect report
}

var (
	_ wsrpc.Observer       = (*Metrics)(nil)
	_ prometheus.Collector = (*Metrics)(nil)
)

// calls are the metrics of the calls of one direction.
type calls struct {
	started  *prometheus.CounterVec
	handled  *prometheus.CounterVec
	handling *prometheus.HistogramVec
	series   sync.Map // method label → *callSeries
	// hot holds series by a cheap hash of their method's name, checked
	// before series: a call of a method seen before costs an atomic load
	// and a string comparison (with an inbound call's Method the
	// registered name itself, the comparison finds the same pointer).
	// Methods whose label is not their name ("other") are never there.
	hot [hotSlots]atomic.Pointer[callSeries]
}

const hotSlots = 16 // a power of two

// hotSlot returns the slot of hot for a method name.
func hotSlot(method string) int {
	if method == "" {
		return 0
	}
	return (len(method) ^ int(method[0]) ^ int(method[len(method)-1])<<2) & (hotSlots - 1)
}

// callSeries are the series of one method label in one direction, looked
// up once: a call that succeeds touches nothing else.
type callSeries struct {
	label    string
	started  prometheus.Counter
	ok       prometheus.Counter // handled with code OK
	handling prometheus.Observer
}

// New returns a Metrics configured by opts (nil means every default),
// whose series all start at zero. It does no I/O and registers nothing:
// register it on a Registerer. It panics if opts.Buckets are not in
// increasing order, as prometheus.NewHistogram would.
func New(opts *Options) *Metrics {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.MaxMethods == 0 {
		o.MaxMethods = DefaultMaxMethods
	}
	if o.MaxCodes == 0 {
		o.MaxCodes = DefaultMaxCodes
	}
	if o.Buckets == nil {
		o.Buckets = DefaultBuckets
	}
	for i, b := range o.Buckets {
		if math.IsNaN(b) || i > 0 && b <= o.Buckets[i-1] {
			panic("promwsrpc: Options.Buckets are not in increasing order")
		}
	}
	buckets := append([]float64(nil), o.Buckets...)

	m := &Metrics{
		server: newCalls("server", "calls from the peer, served by this side", buckets),
		client: newCalls("client", "calls from this side to the peer", buckets),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wsrpc_server_refused_total",
			Help: "Calls from the peer answered at once without running a handler, by method and reason (method_not_found, too_many_calls, shutting_down, other).",
		}, []string{"method", "reason"}),
		connsOpen: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "wsrpc_connections_open",
			Help: "wsrpc connections up now.",
		}),
		connsOpened: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wsrpc_connections_opened_total",
			Help: "wsrpc connections that came up.",
		}),
		connsClosed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wsrpc_connections_closed_total",
			Help: "wsrpc connections that ended, by cause (normal, closed, keepalive_timeout, write_timeout, message_too_big, lost, peer_status, error).",
		}, []string{"cause"}),
		tries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wsrpc_connect_tries_total",
			Help: "Connect tries of wsrpc clients, on Dial and on each reconnect, by outcome (ok, http_error, handshake_timeout, canceled, error).",
		}, []string{"outcome"}),
		framesIn: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wsrpc_frames_received_total",
			Help: "Data frames read from wsrpc connections.",
		}),
		framesOut: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wsrpc_frames_sent_total",
			Help: "Data frames written to wsrpc connections.",
		}),
		bytesIn: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wsrpc_received_bytes_total",
			Help: "Bytes of the data frames read from wsrpc connections.",
		}),
		bytesOut: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wsrpc_sent_bytes_total",
			Help: "Bytes of the data frames written to wsrpc connections.",
		}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wsrpc_frames_dropped_total",
			Help: "Frames given up on instead of written: their connection ended, or a ping or cancel found the send queue full.",
		}),
		methods: labelSet{max: o.MaxMethods},
		codes:   labelSet{max: o.MaxCodes},
		pubsub:  newPubSubMetrics(o.TopicLabels, buckets),
	}
	for _, c := range causes {
		m.connsClosed.WithLabelValues(c)
	}
	for _, o := range outcomes {
		m.tries.WithLabelValues(o)
	}
	queueFrames := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "wsrpc_send_queue_frames",
		Help: "Frames waiting in the send queues of wsrpc connections.",
	}, func() float64 { return float64(m.queuedFrames.Load()) })
	queueBytes := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "wsrpc_send_queue_bytes",
		Help: "Bytes of the frames waiting in the send queues of wsrpc connections.",
	}, func() float64 { return float64(m.queuedBytes.Load()) })
	m.all = []prometheus.Collector{
		m.server.started, m.server.handled, m.server.handling, m.refused,
		m.client.started, m.client.handled, m.client.handling,
		m.connsOpen, m.connsOpened, m.connsClosed, m.tries,
		m.framesIn, m.framesOut, m.bytesIn, m.bytesOut,
		queueFrames, queueBytes, m.dropped,
	}
	m.all = append(m.all, m.pubsub.collectors()...)
	return m
}

func newCalls(side, what string, buckets []float64) calls {
	return calls{
		started: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wsrpc_" + side + "_started_total",
			Help: "Started " + what + ", by method.",
		}, []string{"method"}),
		handled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wsrpc_" + side + "_handled_total",
			Help: "Ended " + what + ", by method and code (OK, a JSON-RPC code's name or number, or what ended a call without an answer).",
		}, []string{"method", "code"}),
		handling: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "wsrpc_" + side + "_handling_seconds",
			Help:    "Duration of " + what + ", from start to end, by method.",
			Buckets: buckets,
		}, []string{"method"}),
	}
}

// Describe sends the descriptors of every metric of m: it implements
// [prometheus.Collector].
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range m.all {
		c.Describe(ch)
	}
}

// Collect sends the current value of every metric of m: it implements
// [prometheus.Collector].
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	for _, c := range m.all {
		c.Collect(ch)
	}
}

// ConnOpened counts a connection up: it implements [wsrpc.Observer].
func (m *Metrics) ConnOpened(*wsrpc.Conn) {
	m.connsOpened.Inc()
	m.connsOpen.Inc()
}

// ConnClosed counts a connection that ended, by cause: it implements
// [wsrpc.Observer].
func (m *Metrics) ConnClosed(_ *wsrpc.Conn, cause error) {
	m.connsOpen.Dec()
	m.connsClosed.WithLabelValues(causeOf(cause)).Inc()
}

// CallStarted counts a call started and returns ctx: it implements
// [wsrpc.Observer].
func (m *Metrics) CallStarted(ctx context.Context, _ *wsrpc.Conn, call *wsrpc.CallInfo) context.Context {
	if s := m.seriesOf(call); s != nil {
		s.started.Inc()
	}
	return ctx
}

// CallEnded counts a call ended, by code, and observes its duration: it
// implements [wsrpc.Observer].
func (m *Metrics) CallEnded(_ context.Context, _ *wsrpc.Conn, call *wsrpc.CallInfo) {
	s := m.seriesOf(call)
	if s == nil {
		return
	}
	s.handling.Observe(call.Duration.Seconds())
	if call.Err == nil {
		s.ok.Inc()
		return
	}
	m.callsOf(call.Dir).handled.WithLabelValues(s.label, m.codeOf(call)).Inc()
}

// CallRefused counts a call from the peer refused, by reason: it
// implements [wsrpc.Observer].
func (m *Metrics) CallRefused(_ *wsrpc.Conn, method string, reason error) {
	r := reasonOf(reason)
	label := labelUnknown
	if r != "method_not_found" {
		label = m.methods.label(method)
	}
	m.refused.WithLabelValues(label, r).Inc()
}

// Frame counts a data frame read or written, and its bytes: it implements
// [wsrpc.Observer].
func (m *Metrics) Frame(_ *wsrpc.Conn, dir wsrpc.Direction, size int) {
	switch dir {
	case wsrpc.Inbound:
		m.framesIn.Inc()
		m.bytesIn.Add(float64(size))
	case wsrpc.Outbound:
		m.framesOut.Inc()
		m.bytesOut.Add(float64(size))
	}
}

// Queue follows the depth of the send queues, and counts the frames
// dropped: it implements [wsrpc.Observer].
func (m *Metrics) Queue(_ *wsrpc.Conn, frames int, bytes int64, dropped int) {
	if frames != 0 {
		m.queuedFrames.Add(int64(frames))
	}
	if bytes != 0 {
		m.queuedBytes.Add(bytes)
	}
	if dropped != 0 {
		m.dropped.Add(float64(dropped))
	}
}

// ConnectTry counts a connect try of a Client, by outcome: it implements
// [wsrpc.Observer].
func (m *Metrics) ConnectTry(_ string, _ int, err error) {
	m.tries.WithLabelValues(outcomeOf(err)).Inc()
}

// callsOf returns the metrics of the calls going dir, or nil.
func (m *Metrics) callsOf(dir wsrpc.Direction) *calls {
	switch dir {
	case wsrpc.Inbound:
		return &m.server
	case wsrpc.Outbound:
		return &m.client
	}
	return nil
}

// seriesOf returns the series of call's method and direction, or nil for
// a direction wsrpc does not define.
func (m *Metrics) seriesOf(call *wsrpc.CallInfo) *callSeries {
	d := m.callsOf(call.Dir)
	if d == nil {
		return nil
	}
	slot := &d.hot[hotSlot(call.Method)]
	if s := slot.Load(); s != nil && s.label == call.Method {
		return s
	}
	if s, ok := d.series.Load(call.Method); ok {
		slot.Store(s.(*callSeries)) // its label is its name: series is keyed by labels
		return s.(*callSeries)
	}
	// A method seen for the first time in this direction, or one over
	// the cap, whose calls always come here (their series is "other").
	label := m.methods.label(call.Method)
	if s, ok := d.series.Load(label); ok {
		return s.(*callSeries)
	}
	s, _ := d.series.LoadOrStore(label, &callSeries{
		label:    label,
		started:  d.started.WithLabelValues(label),
		ok:       d.handled.WithLabelValues(label, "OK"),
		handling: d.handling.WithLabelValues(label),
	})
	return s.(*callSeries)
}

// codeOf returns the code label of a call that failed.
func (m *Metrics) codeOf(call *wsrpc.CallInfo) string {
	if call.Code == 0 {
		return failureOf(call.Err)
	}
	if call.Code == wsrpc.CodeInternalError {
		// A handler that gave up with its context's error: the caller
		// canceled, the deadline passed, or the connection ended.
		if _, chosen := errors.AsType[*wsrpc.Error](call.Err); !chosen &&
			(errors.Is(call.Err, context.Canceled) || errors.Is(call.Err, context.DeadlineExceeded)) {
			return failureOf(call.Err)
		}
	}
	if s := codeName(call.Code); s != "" {
		return s
	}
	return m.codes.label(strconv.Itoa(int(call.Code)))
}
