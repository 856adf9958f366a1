// Jakarta Mail's POP3 provider (com.sun.mail.pop3) as a POP3 client, driven by
// tests/interop/test_interop_javamail.py: one JVM serves a whole test module, since each
// start costs about a second.
//
// Each line on stdin is one scenario: space-separated key=value pairs, values
// percent-encoded. Keys starting with "mail." are Session properties, as an
// application would set them; the others say where to connect and what to do:
//
//   protocol  pop3 or pop3s
//   host, port, user, password: where to connect, and the login
//   ca        a PEM file of CAs: the only ones trusted (the JDK's own are not)
//   mode      READ_ONLY or READ_WRITE: how INBOX is opened
//   fetch     a comma list of uid, envelope: a Folder.fetch of every message first
//   read      a comma list of uid, headers, size, raw, body: what to get of each message
//   delete    true: flag every message DELETED
//   expunge   true or false: the argument of Folder.close
//
// Every result goes to stdout as a record, "KIND NUMBER LENGTH\n", LENGTH bytes and
// "\n"; a scenario ends with an END record, after an ERROR record if it failed.

import com.sun.mail.pop3.POP3Folder;
import jakarta.mail.FetchProfile;
import jakarta.mail.Flags;
import jakarta.mail.Folder;
import jakarta.mail.Message;
import jakarta.mail.Session;
import jakarta.mail.Store;
import jakarta.mail.UIDFolder;
import java.io.BufferedOutputStream;
import java.io.BufferedReader;
import java.io.ByteArrayOutputStream;
import java.io.FileDescriptor;
import java.io.FileInputStream;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.net.URLDecoder;
import java.nio.charset.StandardCharsets;
import java.security.KeyStore;
import java.security.cert.Certificate;
import java.security.cert.CertificateFactory;
import java.util.ArrayList;
import java.util.Collections;
import java.util.Enumeration;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLSocketFactory;
import javax.net.ssl.TrustManagerFactory;

public class JakartaMailDriver {
    private static OutputStream out;

    public static void main(String[] args) throws IOException {
        // Records go straight to fd 1, bytes as they are; anything else (debug output) to stderr.
        out = new BufferedOutputStream(new FileOutputStream(FileDescriptor.out), 1 << 16);
        System.setOut(System.err);
        BufferedReader in =
                new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        record("READY", 0, new byte[0]);
        out.flush();
        String line;
        while ((line = in.readLine()) != null) {
            try {
                run(parse(line));
            } catch (Exception e) {
                record("ERROR", 0, describe(e).getBytes(StandardCharsets.UTF_8));
            }
            record("END", 0, new byte[0]);
            out.flush();
        }
    }

    static Map<String, String> parse(String line) {
        Map<String, String> request = new LinkedHashMap<>();
        for (String pair : line.trim().split(" ")) {
            int eq = pair.indexOf('=');
            request.put(pair.substring(0, eq),
                    URLDecoder.decode(pair.substring(eq + 1), StandardCharsets.UTF_8));
        }
        return request;
    }

    static void run(Map<String, String> request) throws Exception {
        String protocol = request.get("protocol");
        Properties props = new Properties();
        // A hang fails the scenario (and the test) instead of blocking it.
        props.setProperty("mail." + protocol + ".connectiontimeout", "10000");
        props.setProperty("mail." + protocol + ".timeout", "10000");
        for (Map.Entry<String, String> e : request.entrySet()) {
            if (e.getKey().startsWith("mail.")) {
                props.setProperty(e.getKey(), e.getValue());
            }
        }
        if (request.containsKey("ca")) {
            // pop3s handshakes with it; pop3 with STLS layers it on the plain socket.
            props.put("mail." + protocol + ".ssl.socketFactory", trusting(request.get("ca")));
        }
        Session session = Session.getInstance(props);
        session.setDebugOut(System.err);
        Store store = session.getStore(protocol);
        store.connect(request.get("host"), Integer.parseInt(request.get("port")),
                request.get("user"), request.get("password"));
        try {
            Folder folder = store.getFolder("INBOX");
            folder.open("READ_WRITE".equals(request.get("mode"))
                    ? Folder.READ_WRITE : Folder.READ_ONLY);
            record("COUNT", 0, folder.getMessageCount());
            Message[] messages = folder.getMessages();
            if (request.containsKey("fetch")) {
                FetchProfile profile = new FetchProfile();
                for (String item : request.get("fetch").split(",")) {
                    switch (item) {
                        case "uid" -> profile.add(UIDFolder.FetchProfileItem.UID);
                        case "envelope" -> profile.add(FetchProfile.Item.ENVELOPE);
                        default -> throw new IllegalArgumentException(item);
                    }
                }
                folder.fetch(messages, profile);
            }
            List<String> reads = request.containsKey("read")
                    ? List.of(request.get("read").split(",")) : Collections.emptyList();
            for (Message message : messages) {
                int n = message.getMessageNumber();
                for (String what : reads) {
                    switch (what) {
                        case "uid" -> record("UID", n, ((POP3Folder) folder).getUID(message));
                        case "headers" -> record("HEADERS", n, headerLines(message));
                        case "size" -> record("SIZE", n, message.getSize());
                        case "raw" -> {
                            ByteArrayOutputStream raw = new ByteArrayOutputStream();
                            message.writeTo(raw);
                            record("RAW", n, raw.toByteArray());
                        }
                        case "body" -> {
                            try (InputStream body = message.getInputStream()) {
                                record("BODY", n, body.readAllBytes());
                            }
                        }
                        default -> throw new IllegalArgumentException(what);
                    }
                }
                if ("true".equals(request.get("delete"))) {
                    message.setFlag(Flags.Flag.DELETED, true);
                }
            }
            folder.close("true".equals(request.get("expunge")));
        } finally {
            store.close();
        }
    }

    // The header lines as JavaMail parsed them (TOP n 0 unless it has the message), each
    // with its continuation lines, rejoined with CRLF. Without mail.mime.allowutf8 JavaMail
    // reads each octet as one char, so ISO-8859-1 gives the octets back.
    static byte[] headerLines(Message message) throws Exception {
        StringBuilder text = new StringBuilder();
        Enumeration<String> lines = ((jakarta.mail.internet.MimeMessage) message)
                .getAllHeaderLines();
        for (String line : Collections.list(lines)) {
            text.append(line).append("\r\n");
        }
        return text.toString().getBytes(StandardCharsets.ISO_8859_1);
    }

    // An SSLSocketFactory that trusts exactly the certificates in one PEM file.
    static SSLSocketFactory trusting(String pem) throws Exception {
        KeyStore anchors = KeyStore.getInstance(KeyStore.getDefaultType());
        anchors.load(null, null);
        try (InputStream in = new FileInputStream(pem)) {
            int i = 0;
            for (Certificate ca : CertificateFactory.getInstance("X.509")
                    .generateCertificates(in)) {
                anchors.setCertificateEntry("ca" + i++, ca);
            }
        }
        TrustManagerFactory trust =
                TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
        trust.init(anchors);
        SSLContext context = SSLContext.getInstance("TLS");
        context.init(null, trust.getTrustManagers(), null);
        return context.getSocketFactory();
    }

    // The exception and its causes, one "class: message" a line, for the test to match.
    static String describe(Throwable e) {
        List<String> chain = new ArrayList<>();
        for (Throwable t = e; t != null; t = t.getCause()) {
            chain.add(t.getClass().getName() + ": " + t.getMessage());
        }
        return String.join("\n", chain);
    }

    static void record(String kind, int number, Object payload) throws IOException {
        byte[] bytes = payload instanceof byte[] b
                ? b : String.valueOf(payload).getBytes(StandardCharsets.UTF_8);
        out.write((kind + " " + number + " " + bytes.length + "\n")
                .getBytes(StandardCharsets.US_ASCII));
        out.write(bytes);
        out.write('\n');
    }
}
