// Debezium as the outbox's relay, on the local stack (scripts/stack with STACK_RELAY=debezium).
//
// The same role as outbox-processor, done the other way: instead of claiming rows with SQL and
// marking them, Debezium's PostgreSQL connector tails the write-ahead log through a logical
// replication slot, and its Outbox Event Router turns each inserted outbox row into a message.
// Kafka Connect runs that under Compose (deploy/debezium); here Kafka Connect's worker cannot
// start from the jars we can install, so this program runs the same connector settings on
// Debezium's embedded engine and does what Connect's worker (and Debezium Server's Kafka sink)
// does with each routed record:
//
//   1. convert it with the converters the connector settings name (key, value, headers);
//   2. send it with an idempotent producer, acks=all, creating a missing topic first as
//      Connect's topic.creation does;
//   3. only after the broker acknowledged every record of the batch, mark them processed, so
//      the offsets (and with them the slot's confirmed LSN) never pass an unsent event.
//
// A crash between 2 and 3, or before the offsets are flushed (offset.flush.interval.ms), sends
// those records again: at least once, like our relay; the consumers' inboxes absorb it.
//
// One JVM runs one engine per connector file, with one producer for all of them.
//
// Usage: java -cp 'lib/*:classes' DebeziumRelay [--print-config] [--set KEY=VALUE]... CONNECTOR.json...
//   --set overrides or adds a setting: database.* (where the database is), engine settings, and
//         producer.* (the producer's own settings, as Connect's worker takes them);
//         CONNECTOR:KEY=VALUE sets it for the connector of file CONNECTOR.json only.
//   --print-config prints every connector's effective settings as "connector key=value" lines
//         and exits (what the stack's settings check compares with deploy/debezium).
// Environment: KAFKA_BROKERS (127.0.0.1:9092), PORT (8083: GET /health, GET /metrics),
//   DEBEZIUM_STATE_DIR (where the offset files live; .).

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import io.debezium.embedded.Connect;
import io.debezium.engine.DebeziumEngine;
import io.debezium.engine.RecordChangeEvent;
import io.debezium.engine.format.ChangeEventFormat;
import java.io.File;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.header.internals.RecordHeaders;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.connect.header.Header;
import org.apache.kafka.connect.source.SourceRecord;
import org.apache.kafka.connect.storage.Converter;
import org.apache.kafka.connect.storage.HeaderConverter;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

public final class DebeziumRelay {
    private static final Logger LOG = LoggerFactory.getLogger("debezium-relay");
    private static final String PRODUCER_PREFIX = "producer.";
    // Records Debezium emits on heartbeat.interval.ms. Nothing consumes them; they exist so the
    // engine commits an offset on a quiet database and its slot stops holding WAL. They are
    // marked without being sent (the broker creates no topic on its own).
    private static final String HEARTBEAT_TOPIC_PREFIX = "__debezium-heartbeat";

    public static void main(String[] args) throws Exception {
        boolean printConfig = false;
        Map<String, String> overrides = new LinkedHashMap<>();
        List<Path> files = new ArrayList<>();
        for (int i = 0; i < args.length; i++) {
            switch (args[i]) {
                case "--print-config" -> printConfig = true;
                case "--set" -> {
                    if (i + 1 >= args.length || !args[i + 1].contains("=")) {
                        usage("--set takes KEY=VALUE");
                    }
                    String kv = args[++i];
                    int eq = kv.indexOf('=');
                    overrides.put(kv.substring(0, eq), kv.substring(eq + 1));
                }
                default -> {
                    if (args[i].startsWith("--")) {
                        usage("unknown option " + args[i]);
                    }
                    files.add(Path.of(args[i]));
                }
            }
        }
        if (files.isEmpty()) {
            usage("no connector file");
        }

        Map<String, String> producerSettings = new TreeMap<>();
        Map<String, String> connectorOverrides = new LinkedHashMap<>();
        overrides.forEach((k, v) -> {
            if (k.startsWith(PRODUCER_PREFIX)) {
                producerSettings.put(k.substring(PRODUCER_PREFIX.length()), v);
            } else {
                connectorOverrides.put(k, v);
            }
        });
        String stateDir = env("DEBEZIUM_STATE_DIR", ".");
        List<Connector> connectors = new ArrayList<>();
        for (Path file : files) {
            connectors.add(Connector.load(file, connectorOverrides, stateDir));
        }
        for (String key : connectorOverrides.keySet()) {
            int colon = key.indexOf(':');
            if (colon >= 0 && connectors.stream().noneMatch(c -> c.name.equals(key.substring(0, colon)))) {
                usage("--set " + key + ": no connector file is named " + key.substring(0, colon));
            }
        }
        if (printConfig) {
            for (Connector c : connectors) {
                new TreeMap<>(c.settings).forEach((k, v) -> System.out.println(c.name + " " + k + "=" + v));
            }
            return;
        }

        String brokers = env("KAFKA_BROKERS", "127.0.0.1:9092");
        Sink sink = new Sink(brokers, producerSettings);
        List<Relay> relays = new ArrayList<>();
        for (Connector c : connectors) {
            relays.add(new Relay(c, sink));
        }
        HttpServer http = serve(Integer.parseInt(env("PORT", "8083")), relays, sink);
        relays.forEach(Relay::start);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            LOG.info("shutting down: stopping the engines, then the producer");
            http.stop(0);
            relays.forEach(Relay::stop);
            sink.close();
            LOG.info("stopped");
        }));
        Thread.currentThread().join();
    }

    private static void usage(String problem) {
        System.err.println("debezium-relay: " + problem);
        System.err.println("usage: DebeziumRelay [--print-config] [--set KEY=VALUE]... CONNECTOR.json...");
        System.exit(2);
    }

    private static String env(String name, String fallback) {
        String v = System.getenv(name);
        return v == null || v.isEmpty() ? fallback : v;
    }

    /** One connector's settings: its deploy/debezium file, the overrides, the engine's own. */
    static final class Connector {
        final String name;
        final Map<String, String> settings;

        private Connector(String name, Map<String, String> settings) {
            this.name = name;
            this.settings = settings;
        }

        static Connector load(Path file, Map<String, String> overrides, String stateDir) throws IOException {
            String name = file.getFileName().toString().replaceFirst("\\.json$", "");
            JsonNode json = new ObjectMapper().readTree(file.toFile());
            if (!json.isObject()) {
                throw new IOException(file + ": a connector file is a JSON object of settings");
            }
            Map<String, String> s = new LinkedHashMap<>();
            for (Map.Entry<String, JsonNode> e : json.properties()) {
                s.put(e.getKey(), e.getValue().asText());
            }
            // What Kafka Connect's worker holds for a connector under Compose: its name and where
            // its offsets live. A --set may still change them.
            s.put("name", name);
            s.put("offset.storage", "org.apache.kafka.connect.storage.FileOffsetBackingStore");
            s.put("offset.storage.file.filename", new File(stateDir, name + ".offsets").getPath());
            s.put("offset.flush.interval.ms", "1000");
            overrides.forEach((k, v) -> {
                int colon = k.indexOf(':');
                if (colon < 0) {
                    s.put(k, v);
                } else if (k.substring(0, colon).equals(name)) {
                    s.put(k.substring(colon + 1), v);
                }
            });
            return new Connector(name, s);
        }

        int intSetting(String key, int fallback) {
            String v = settings.get(key);
            return v == null ? fallback : Integer.parseInt(v);
        }

        Properties properties() {
            Properties p = new Properties();
            p.putAll(settings);
            return p;
        }

        /** A converter named by the settings, configured with its own prefixed settings, as Connect does. */
        <T> T plugin(String key, Class<T> type) throws ReflectiveOperationException {
            String cls = settings.get(key);
            if (cls == null) {
                throw new IllegalArgumentException(name + ": no " + key);
            }
            return type.cast(Class.forName(cls).getDeclaredConstructor().newInstance());
        }

        Map<String, String> prefixed(String prefix) {
            Map<String, String> m = new HashMap<>();
            settings.forEach((k, v) -> {
                if (k.startsWith(prefix)) {
                    m.put(k.substring(prefix.length()), v);
                }
            });
            return m;
        }
    }

    /** The broker side: one idempotent producer, and the topics it has made sure of. */
    static final class Sink {
        private final Map<String, Object> producerConfig = new HashMap<>();
        private final Admin admin;
        private final Set<String> knownTopics = ConcurrentHashMap.newKeySet();
        private volatile KafkaProducer<byte[], byte[]> producer;
        final AtomicLong sent = new AtomicLong();
        final AtomicLong failedBatches = new AtomicLong();

        Sink(String brokers, Map<String, String> settings) {
            producerConfig.put("bootstrap.servers", brokers);
            producerConfig.put("acks", "all");
            producerConfig.put("enable.idempotence", "true");
            producerConfig.putAll(settings);
            producerConfig.put("key.serializer", ByteArraySerializer.class.getName());
            producerConfig.put("value.serializer", ByteArraySerializer.class.getName());
            LOG.info("producer settings: {}", new TreeMap<>(producerConfig));
            admin = Admin.create(Map.of("bootstrap.servers", brokers));
            producer = new KafkaProducer<>(producerConfig);
        }

        synchronized KafkaProducer<byte[], byte[]> producer() {
            return producer;
        }

        /**
         * A producer after a failed send is replaced: the Java client bumps an idempotent
         * producer's epoch after a timeout, which the local broker rejects for good
         * (docs/local-broker.md); a new producer gets a new id. Sends still in the old one fail and
         * are sent again.
         */
        synchronized void renew(KafkaProducer<byte[], byte[]> failed) {
            if (producer != failed) {
                return;
            }
            failed.close(java.time.Duration.ZERO);
            producer = new KafkaProducer<>(producerConfig);
        }

        void ensureTopic(String topic, int partitions, short replication) throws InterruptedException {
            if (knownTopics.contains(topic)) {
                return;
            }
            try {
                admin.createTopics(List.of(new NewTopic(topic, partitions, replication))).all().get(30, TimeUnit.SECONDS);
                LOG.info("created topic {} ({} partitions)", topic, partitions);
            } catch (ExecutionException e) {
                if (!(e.getCause() instanceof TopicExistsException)) {
                    throw new SendFailed("creating topic " + topic, e.getCause());
                }
            } catch (java.util.concurrent.TimeoutException e) {
                throw new SendFailed("creating topic " + topic, e);
            }
            knownTopics.add(topic);
        }

        void close() {
            producer().close(java.time.Duration.ofSeconds(10));
            admin.close(java.time.Duration.ofSeconds(5));
        }
    }

    static final class SendFailed extends RuntimeException {
        private static final long serialVersionUID = 1L;

        SendFailed(String what, Throwable cause) {
            super(what + ": " + cause, cause);
        }
    }

    /** One connector on its engine, restarted after a failure, sending through the sink. */
    static final class Relay implements DebeziumEngine.ChangeConsumer<RecordChangeEvent<SourceRecord>> {
        private final Connector connector;
        private final Sink sink;
        private final Converter keyConverter;
        private final Converter valueConverter;
        private final HeaderConverter headerConverter;
        private final int partitions;
        private final short replication;
        private final Thread thread;
        private volatile DebeziumEngine<RecordChangeEvent<SourceRecord>> engine;
        private volatile boolean stopping;
        volatile boolean streaming;
        final AtomicLong restarts = new AtomicLong();
        final AtomicLong sent = new AtomicLong();

        Relay(Connector connector, Sink sink) throws ReflectiveOperationException {
            this.connector = connector;
            this.sink = sink;
            keyConverter = connector.plugin("key.converter", Converter.class);
            keyConverter.configure(connector.prefixed("key.converter."), true);
            valueConverter = connector.plugin("value.converter", Converter.class);
            valueConverter.configure(connector.prefixed("value.converter."), false);
            headerConverter = connector.plugin("header.converter", HeaderConverter.class);
            headerConverter.configure(connector.prefixed("header.converter."));
            partitions = connector.intSetting("topic.creation.default.partitions", 3);
            replication = (short) connector.intSetting("topic.creation.default.replication.factor", 1);
            thread = new Thread(this::runEngines, connector.name);
        }

        void start() {
            thread.start();
        }

        /** The engine runs on this thread; when it ends without being asked, a new one starts. */
        private void runEngines() {
            long backoffMs = 1000;
            while (!stopping) {
                engine = DebeziumEngine.create(ChangeEventFormat.of(Connect.class))
                    .using(connector.properties())
                    .using(new DebeziumEngine.ConnectorCallback() {
                        @Override
                        public void pollingStarted() {
                            streaming = true;
                            LOG.info("{}: streaming", connector.name);
                        }

                        @Override
                        public void pollingStopped() {
                            streaming = false;
                        }
                    })
                    .using((ok, message, error) -> {
                        streaming = false;
                        if (!stopping) {
                            LOG.error("{}: engine stopped: {}", connector.name, message, error);
                        }
                    })
                    .notifying(this)
                    .build();
                engine.run();
                if (stopping) {
                    break;
                }
                restarts.incrementAndGet();
                LOG.warn("{}: restarting the engine in {} ms", connector.name, backoffMs);
                try {
                    Thread.sleep(backoffMs);
                } catch (InterruptedException e) {
                    break;
                }
                backoffMs = Math.min(backoffMs * 2, 30_000);
            }
        }

        void stop() {
            stopping = true;
            try {
                if (engine != null) {
                    engine.close();
                }
                thread.join(30_000);
            } catch (IOException | InterruptedException e) {
                LOG.warn("{}: engine did not close cleanly: {}", connector.name, e.toString());
            }
        }

        @Override
        public void handleBatch(List<RecordChangeEvent<SourceRecord>> batch,
                DebeziumEngine.RecordCommitter<RecordChangeEvent<SourceRecord>> committer) throws InterruptedException {
            List<ProducerRecord<byte[], byte[]>> out = new ArrayList<>(batch.size());
            for (RecordChangeEvent<SourceRecord> event : batch) {
                SourceRecord r = event.record();
                if (r.topic().startsWith(HEARTBEAT_TOPIC_PREFIX) || r.value() == null) {
                    continue; // a heartbeat, or a tombstone (the router makes none: tombstones.on.delete=false)
                }
                out.add(convert(r));
            }
            sendAll(out);
            for (RecordChangeEvent<SourceRecord> event : batch) {
                committer.markProcessed(event);
            }
            committer.markBatchFinished();
        }

        private ProducerRecord<byte[], byte[]> convert(SourceRecord r) {
            RecordHeaders headers = new RecordHeaders();
            for (Header h : r.headers()) {
                headers.add(h.key(), headerConverter.fromConnectHeader(r.topic(), h.key(), h.schema(), h.value()));
            }
            byte[] key = keyConverter.fromConnectData(r.topic(), r.keySchema(), r.key());
            byte[] value = valueConverter.fromConnectData(r.topic(), r.valueSchema(), r.value());
            // No partition: the producer's partitioner picks it from the key (murmur2), which
            // our relay's producers are set to match.
            return new ProducerRecord<>(r.topic(), null, r.timestamp(), key, value, headers);
        }

        /**
         * Sends the records and waits for every acknowledgement. A failure (the broker away, a
         * topic that cannot be created) sends again from the first record that was not
         * acknowledged, after a backoff, until it goes through or the relay stops: what is
         * not acknowledged is never marked, and records of one key keep their order.
         */
        private void sendAll(List<ProducerRecord<byte[], byte[]>> records) throws InterruptedException {
            int from = 0;
            long backoffMs = 200;
            while (from < records.size()) {
                if (stopping) {
                    throw new InterruptedException("stopping with unsent records; they are sent again at the next start");
                }
                KafkaProducer<byte[], byte[]> producer = sink.producer();
                List<Future<RecordMetadata>> acks = new ArrayList<>();
                int acked = from;
                try {
                    for (int i = from; i < records.size(); i++) {
                        ProducerRecord<byte[], byte[]> rec = records.get(i);
                        sink.ensureTopic(rec.topic(), partitions, replication);
                        acks.add(producer.send(rec));
                    }
                    for (Future<RecordMetadata> ack : acks) {
                        ack.get();
                        acked++;
                    }
                    sent.addAndGet(acked - from);
                    sink.sent.addAndGet(acked - from);
                    return;
                } catch (ExecutionException | RuntimeException e) {
                    Throwable cause = e instanceof ExecutionException ? e.getCause() : e;
                    sent.addAndGet(acked - from);
                    sink.sent.addAndGet(acked - from);
                    sink.failedBatches.incrementAndGet();
                    LOG.warn("{}: {} of {} records not acknowledged ({}); sending them again in {} ms",
                        connector.name, records.size() - acked, records.size(), cause.toString(), backoffMs);
                    from = acked;
                    sink.renew(producer);
                    Thread.sleep(backoffMs);
                    backoffMs = Math.min(backoffMs * 2, 5_000);
                }
            }
        }
    }

    private static HttpServer serve(int port, List<Relay> relays, Sink sink) throws IOException {
        HttpServer http = HttpServer.create(new InetSocketAddress("127.0.0.1", port), 16);
        http.createContext("/health", exchange -> {
            List<String> down = new ArrayList<>();
            for (Relay r : relays) {
                if (!r.streaming) {
                    down.add(r.connector.name);
                }
            }
            String body = down.isEmpty()
                ? "{\"status\":\"ok\"}"
                : "{\"status\":\"starting\",\"not_streaming\":" + toJson(down) + "}";
            reply(exchange, down.isEmpty() ? 200 : 503, "application/json", body);
        });
        http.createContext("/metrics", exchange -> {
            StringBuilder b = new StringBuilder();
            perConnector(b, "debezium_relay_sent_total", "counter", "Records the broker acknowledged.",
                relays, r -> r.sent.get());
            perConnector(b, "debezium_relay_streaming", "gauge", "1 while the connector streams from its slot.",
                relays, r -> r.streaming ? 1 : 0);
            perConnector(b, "debezium_relay_engine_restarts_total", "counter",
                "Engines started again after they stopped on their own.", relays, r -> r.restarts.get());
            b.append("# HELP debezium_relay_failed_sends_total Sends of a batch that failed and were made again.\n");
            b.append("# TYPE debezium_relay_failed_sends_total counter\n");
            b.append("debezium_relay_failed_sends_total ").append(sink.failedBatches.get()).append('\n');
            reply(exchange, 200, "text/plain; version=0.0.4", b.toString());
        });
        http.start();
        LOG.info("listening on http://127.0.0.1:{} (/health, /metrics)", port);
        return http;
    }

    /** One metric in Prometheus's text format, a line per connector. */
    private static void perConnector(StringBuilder b, String name, String type, String help, List<Relay> relays,
            java.util.function.ToLongFunction<Relay> value) {
        b.append("# HELP ").append(name).append(' ').append(help).append('\n');
        b.append("# TYPE ").append(name).append(' ').append(type).append('\n');
        for (Relay r : relays) {
            b.append(name).append("{connector=\"").append(r.connector.name).append("\"} ")
                .append(value.applyAsLong(r)).append('\n');
        }
    }

    private static String toJson(List<String> names) {
        List<String> quoted = new ArrayList<>();
        for (String n : names) {
            quoted.add('"' + n + '"');
        }
        return "[" + String.join(",", quoted) + "]";
    }

    private static void reply(HttpExchange exchange, int status, String type, String body) throws IOException {
        byte[] bytes = body.getBytes(StandardCharsets.UTF_8);
        exchange.getResponseHeaders().set("Content-Type", type);
        exchange.sendResponseHeaders(status, bytes.length);
        try (OutputStream os = exchange.getResponseBody()) {
            os.write(bytes);
        }
    }
}
