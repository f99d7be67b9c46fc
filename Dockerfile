# The cloud API and the simulated gateway share one image; the command picks the part.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY storelink ./storelink
COPY gateway ./gateway
COPY firmware_sim ./firmware_sim
COPY cloud_api ./cloud_api
RUN pip install --no-cache-dir '.[cloud,sim]' \
    && mkdir -p /var/lib/storelink && chown nobody /var/lib/storelink
USER nobody
EXPOSE 8000
CMD ["storelink", "cloud", "serve", "--host", "0.0.0.0", "--port", "8000"]
