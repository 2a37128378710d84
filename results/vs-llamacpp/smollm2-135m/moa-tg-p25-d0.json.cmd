build/cli/moa bench decode -m /root/.cache/moa/SmolLM2-135M-Instruct.Q4_1.gguf --context 0 --tokens 128 -r 3 --warmup 1 --uniform 0.25 --kv-type f16 --format json
