# The dunning worker image: the project installed with its pinned dependencies.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY dunning ./dunning
RUN pip install --no-cache-dir -c constraints.txt . && useradd --create-home dunning
USER dunning
ENTRYPOINT ["dunning"]
CMD ["worker"]
