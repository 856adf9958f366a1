# Ruby's Net::POP3 (the net-pop gem bundled with Ruby) as a POP3 client, run by
# tests/interop/test_interop_ruby.py; the way Redmine's and Zammad's mail fetchers use it.
#
# ARGV[0] is a JSON plan: where to connect, how to log in, and what to do with each
# message. Every result goes to stdout as a record, "KIND NUMBER LENGTH\n", then
# LENGTH bytes and "\n", so the test compares the bytes exactly. Errors are not
# caught: Ruby prints the exception class and message on stderr and exits 1.

require "json"
require "net/pop"
require "openssl"

plan = JSON.parse(ARGV.fetch(0))
$stdout.binmode

def record(kind, number, payload)
  payload = payload.to_s.b
  $stdout.write("#{kind} #{number} #{payload.bytesize}\n", payload, "\n")
end

pop = (plan["apop"] ? Net::APOP : Net::POP3).new(plan["host"], plan["port"])
if plan["ca_file"]
  # Implicit TLS. Net::POP3 takes OpenSSL::SSL::SSLContext#set_params parameters, not a
  # context; it checks the host name itself after the handshake (post_connection_check).
  pop.enable_ssl(verify_mode: OpenSSL::SSL::VERIFY_PEER, ca_file: plan["ca_file"])
end
pop.open_timeout = 10
pop.read_timeout = 10

pop.start(plan["user"], plan["password"]) do |session|
  record("COUNT", 0, session.n_mails)     # STAT
  record("OCTETS", 0, session.n_bytes)
  session.each_mail do |mail|             # LIST, once
    record("SIZE", mail.number, mail.length)
    plan.fetch("each", []).each do |action|
      case action
      when "pop" then record("MAIL", mail.number, mail.pop)            # RETR n
      when "uid" then record("UID", mail.number, mail.unique_id)       # UIDL, once
      when "header" then record("HEADER", mail.number, mail.header)    # TOP n 0
      when "delete" then mail.delete                                   # DELE n
      else raise ArgumentError, "unknown action #{action}"
      end
    end
  end
  session.reset if plan["reset"]          # RSET
end                                       # QUIT, then the socket is closed
record("FINISHED", 0, "")
