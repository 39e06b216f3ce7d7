"""Evidence files vendors upload with their answers (certificates, ISMAP registration, audit
reports, 消去証明書): checked by content, scanned, stored outside ``static/`` by random name."""
