;;; emacs_pop3.el --- drive Emacs's pop3.el from a JSON plan  -*- lexical-binding: t -*-

;; Run as: emacs --batch -Q -l emacs_pop3.el PLAN.json
;;
;; The plan names the server, the account and what to do: "steps" calls pop3.el's commands one
;; by one in one session; "movemail" runs `pop3-movemail' into a file instead. What the steps
;; return goes to OUT/results.json, and each message `pop3-retr' fetched to OUT/retr-N, byte for
;; byte; an error ends the run with its message in results.json and exit status 1.

(require 'pop3)
(require 'json)
(require 'gnutls)
(require 'nsm)

(defun fakepop--get (plan key &optional default)
  (let ((cell (assq key plan)))
    (if cell (cdr cell) default)))

(defun fakepop--write (file string)
  "Write STRING to FILE as its raw bytes."
  (with-temp-buffer
    (set-buffer-multibyte nil)
    (insert string)
    (let ((coding-system-for-write 'binary))
      (write-region nil nil file nil 'silent))))

(defun fakepop--step (process step out)
  "Run one STEP, a vector [NAME ARG...], on PROCESS; return what it gives, for JSON."
  (let ((name (aref step 0))
        (arg (and (> (length step) 1) (aref step 1))))
    (pcase name
      ("stat" (vconcat (pop3-stat process)))
      ("list" (if arg
                  (pop3-list process arg)
                (vconcat (mapcar (lambda (cell) (vector (car cell) (cdr cell)))
                                 (pop3-list process)))))
      ("retr" (let ((buffer (generate-new-buffer " retr")))
                (pop3-retr process arg buffer)
                ;; The process buffer is unibyte text (coding `binary'), so each octet the
                ;; server sent is one character here and goes out as that octet.
                (with-current-buffer buffer
                  (let ((coding-system-for-write 'binary))
                    (write-region nil nil (expand-file-name (format "retr-%d" arg) out)
                                  nil 'silent)))
                (kill-buffer buffer)
                t))
      ("dele" (and (pop3-dele process arg) t))
      ("noop" (and (pop3-noop process nil) t))
      ("rset" (and (pop3-rset process) t))
      ("last" (pop3-last process))
      ("quit" (pop3-quit process) t)
      (_ (error "Unknown step %s" name)))))

(let* ((plan (let ((json-object-type 'alist) (json-array-type 'vector) (json-key-type 'symbol))
               (json-read-file (pop command-line-args-left))))
       (out (fakepop--get plan 'out))
       (results nil)
       (status 0))
  ;; Trust the server's CA and nothing else; refuse any certificate that does not verify,
  ;; name included, instead of asking (there is nobody to ask in batch mode).
  (setq gnutls-trustfiles (list (fakepop--get plan 'ca))
        gnutls-verify-error t
        network-security-level 'medium
        nsm-settings-file (expand-file-name "network-security.data" out)
        ;; pop3.el asks before it uses a connection without TLS, and in batch mode the answer
        ;; is no: a plain test says that a server on this machine may be spoken to in clear.
        nsm-trust-local-network (eq (fakepop--get plan 'trust_local) t))
  (setq pop3-mailhost (fakepop--get plan 'host)
        pop3-port (fakepop--get plan 'port)
        pop3-maildrop (fakepop--get plan 'user)
        pop3-password (fakepop--get plan 'password)
        pop3-authentication-scheme (intern (fakepop--get plan 'auth "pass"))
        pop3-stream-type (let ((type (fakepop--get plan 'stream)))
                           (and type (intern type)))
        pop3-leave-mail-on-server (fakepop--get plan 'leave)
        pop3-uidl-file (fakepop--get plan 'uidl_file))
  (condition-case err
      (let ((movemail (fakepop--get plan 'movemail)))
        (if movemail
            (push (cons "movemail" (pop3-movemail movemail)) results)
          (let ((process (pop3-open-server pop3-mailhost pop3-port)))
            (unless process
              (error "pop3-open-server returned nil"))
            (push (cons "timestamp" pop3-timestamp) results)
            (pop3-logon process)
            (let ((n 0))
              (mapc (lambda (step)
                      (push (cons (format "%d %s" (cl-incf n) (aref step 0))
                                  (fakepop--step process step out))
                            results))
                    (fakepop--get plan 'steps))))))
    (error
     (push (cons "error" (error-message-string err)) results)
     (setq status 1)))
  (fakepop--write (expand-file-name "results.json" out)
                  (encode-coding-string (json-encode (nreverse results)) 'utf-8))
  (kill-emacs status))

;;; emacs_pop3.el ends here
