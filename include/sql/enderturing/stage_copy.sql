COPY {stage} ({columns}) FROM STDIN
