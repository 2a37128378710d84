build/cli/moa bench decode -m /root/.cache/moa/SmolLM2-135M-Instruct.Q4_1.gguf --context 7680 --tokens 128 -r 3 --warmup 1 --plan plans/smollm2-135m-25.json --kv-type q8_0 --format json
