package eventline;

import java.io.IOException;
import java.io.InputStream;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Properties;

/**
 * Runs one Apache Kafka broker (KRaft, combined broker and controller) for Eventline's local
 * setups, as a child process that never outlives its parent.
 *
 * <p>Usage: {@code java -cp 'libs/*' eventline.KafkaLauncher server.properties [FORMAT_ARG...]}
 *
 * <ol>
 *   <li>Formats the log directory when it has no {@code meta.properties} yet (Kafka's StorageTool,
 *       {@code --standalone}: this controller is the whole quorum), in this JVM, to spare a second
 *       JVM start. Any further arguments go to the format command as they are, e.g.
 *       {@code --add-scram SCRAM-SHA-256=[name=alice,password=alice-secret]} to create a SCRAM
 *       user with the cluster; a log directory formatted before keeps the users it has.</li>
 *   <li>Watches standard input: the parent holds the other end of the pipe, so when the parent
 *       exits for any reason, SIGKILL included, the pipe reaches end-of-file and the broker shuts
 *       down (cleanly, then by force after a deadline). A broker can never be left running on the
 *       port by a parent that died.</li>
 *   <li>Runs {@code kafka.Kafka}, which blocks until the broker stops.</li>
 * </ol>
 */
public final class KafkaLauncher {
    private static final long SHUTDOWN_DEADLINE_MS = 20_000;

    private KafkaLauncher() {}

    public static void main(String[] args) throws IOException {
        if (args.length < 1) {
            System.err.println("usage: KafkaLauncher SERVER_PROPERTIES [FORMAT_ARG...]");
            System.exit(2);
        }
        String config = args[0];
        formatIfNew(config, Arrays.copyOfRange(args, 1, args.length));
        watchParent();
        kafka.Kafka.main(new String[] {config});
    }

    private static void formatIfNew(String config, String[] extra) throws IOException {
        Properties properties = new Properties();
        try (InputStream in = Files.newInputStream(Path.of(config))) {
            properties.load(in);
        }
        Path logDir = Path.of(properties.getProperty("log.dirs"));
        if (Files.exists(logDir.resolve("meta.properties"))) {
            return;
        }
        String clusterId = org.apache.kafka.common.Uuid.randomUuid().toString();
        List<String> format = new ArrayList<>(
                List.of("format", "--config", config, "--cluster-id", clusterId, "--standalone"));
        format.addAll(Arrays.asList(extra));
        int code;
        try {
            code = kafka.tools.StorageTool.execute(format.toArray(new String[0]), System.out);
        } catch (Exception e) {
            System.err.println("formatting " + logDir + " failed: " + e.getMessage());
            code = 1;
        }
        if (code != 0) {
            System.err.println("formatting " + logDir + " failed with exit code " + code);
            System.exit(code);
        }
    }

    private static void watchParent() {
        Thread watcher = new Thread(() -> {
            try {
                byte[] buffer = new byte[256];
                while (System.in.read(buffer) >= 0) {
                    // The parent writes nothing; any bytes are ignored.
                }
            } catch (IOException e) {
                // A broken pipe means the same as end-of-file.
            }
            PrintStream err = System.err;
            err.println("eventline: the parent process is gone; stopping the broker");
            Thread killer = new Thread(() -> {
                try {
                    Thread.sleep(SHUTDOWN_DEADLINE_MS);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
                Runtime.getRuntime().halt(1);
            }, "eventline-shutdown-deadline");
            killer.setDaemon(true);
            killer.start();
            System.exit(0);
        }, "eventline-parent-watch");
        watcher.setDaemon(true);
        watcher.start();
    }
}
